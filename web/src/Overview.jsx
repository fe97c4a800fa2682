import { useState } from 'react';
import { useEditorContext } from '@graphiql/react';
import { Icon, Panel, saveFile, usePolled } from './polled';

// The trackers a container's "trace" buttons start.
const TRACE = ['process', 'syscall', 'tcp', 'files'];

export const CONTAINERS_TITLE = 'Containers';
const CONTAINERS_QUERY = '{ containers { id name image runtime state pids } }';

export function ContainersIcon() {
  return <Icon d="M4 7h16v12H4zM8 7V4h8v3" />;
}

// A Start mutation for `tracker` on one container (its restarts followed).
function traceContainer(tracker, container) {
  const query = `# ${tracker} in container ${container.name ?? container.id}
mutation Trace($tracker: String!, $container: String!) {
  startSession(input: {tracker: $tracker, durationSecs: 30, store: MEMORY,
                       filter: {container: $container}}) { id status endsAt }
}
`;
  return { query, variables: JSON.stringify({ tracker, container: container.id }, null, 2) };
}

export function makeContainers(load) {
  return function Containers() {
    const { queryEditor, variableEditor } = useEditorContext({ nonNull: true });
    const polled = usePolled(load, CONTAINERS_QUERY);
    const trace = (tracker, container) => {
      if (!queryEditor || !variableEditor) return;
      const { query, variables } = traceContainer(tracker, container);
      queryEditor.setValue(query);
      variableEditor.setValue(variables);
    };
    return (
      <Panel title={CONTAINERS_TITLE} className="eunomia-containers" polled={polled}>
        {({ containers }) =>
          containers.length === 0 ? (
            <p>No running containers.</p>
          ) : (
            <table>
              <tbody>
                {containers.map((c) => (
                  <tr key={c.id} data-container={c.id}>
                    <td>
                      <strong>{c.name ?? c.id.slice(0, 12)}</strong> {c.image ?? ''}
                      <div className="eunomia-type">
                        {c.runtime} {c.state}, pids {c.pids.join(' ') || 'none'}
                      </div>
                      <div>
                        trace:{' '}
                        {TRACE.map((tracker) => (
                          <button
                            key={tracker}
                            type="button"
                            className="eunomia-example"
                            data-trace={tracker}
                            onClick={() => trace(tracker, c)}
                          >
                            {tracker}
                          </button>
                        ))}
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )
        }
      </Panel>
    );
  };
}

export const ALERTS_TITLE = 'Alerts';
const SEVERITIES = ['INFO', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'];

function alertsQuery(minSeverity) {
  return `{ alerts(first: 50, filter: {minSeverity: ${minSeverity}}) { nodes { id lastTs count rule
    severity technique tactic comm pid containerName output event } } }`;
}

export function AlertsIcon() {
  return <Icon d="M12 4l9 16H3zM12 10v4M12 17v0.5" />;
}

// The newest alerts at or above a severity: rule, MITRE technique and tactic, who, the
// output, and the triggering event on a click.
export function makeAlerts(load) {
  return function Alerts() {
    const [minSeverity, setMinSeverity] = useState('INFO');
    const [shown, setShown] = useState(null);
    const polled = usePolled(load, alertsQuery(minSeverity));
    return (
      <Panel title={ALERTS_TITLE} className="eunomia-alerts" polled={polled}>
        {({ alerts }) => (
          <>
            <label>
              at least{' '}
              <select name="minSeverity" value={minSeverity} onChange={(e) => setMinSeverity(e.target.value)}>
                {SEVERITIES.map((s) => (
                  <option key={s}>{s}</option>
                ))}
              </select>
            </label>
            {alerts.nodes.length === 0 && <p>No alerts.</p>}
            <table>
              <tbody>
                {alerts.nodes.map((a) => (
                  <tr key={a.id} data-alert={a.id} data-severity={a.severity}>
                    <td>
                      <strong className={`eunomia-severity-${a.severity}`}>{a.severity}</strong> {a.rule}
                      {a.count > 1 ? ` (x${a.count})` : ''}
                      <div className="eunomia-type">
                        {a.technique} {a.tactic}; {a.comm} ({a.pid}){a.containerName ? ` in ${a.containerName}` : ''};{' '}
                        {a.lastTs}
                      </div>
                      <div>{a.output}</div>
                      <button
                        type="button"
                        className="eunomia-example"
                        data-action="event"
                        onClick={() => setShown(shown === a.id ? null : a.id)}
                      >
                        event
                      </button>
                      {shown === a.id && <pre className="eunomia-event">{JSON.stringify(a.event, null, 2)}</pre>}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </Panel>
    );
  };
}

export const RULES_TITLE = 'Rules';
const RULES_QUERY = `{ me { role } rules { id name severity enabled hits
  mitre { technique name tactic } } }`;
const SET_ENABLED = `mutation($id: String!, $enabled: Boolean!) {
  setRuleEnabled(id: $id, enabled: $enabled) { id enabled }
}`;

export function RulesIcon() {
  return <Icon d="M5 6h14M5 12h14M5 18h8M17 16l2 2 3-4" />;
}

// The detection rules with their hits; operators turn them on and off.
export function makeRules(load) {
  return function Rules() {
    const polled = usePolled(load, RULES_QUERY);
    return (
      <Panel title={RULES_TITLE} className="eunomia-rules" polled={polled}>
        {({ me, rules }) => (
          <table>
            <tbody>
              {rules.map((r) => (
                <tr key={r.id} data-rule={r.id} data-enabled={String(r.enabled)}>
                  <td>
                    <strong className={`eunomia-severity-${r.severity}`}>{r.severity}</strong> {r.name}
                    <div className="eunomia-type">
                      {r.id}; {r.mitre.technique} {r.mitre.name} ({r.mitre.tactic}); {r.hits} hits
                    </div>
                  </td>
                  <td>
                    {me.role === 'OPERATOR' ? (
                      <button type="button" className="eunomia-example" data-action="toggle" onClick={() => polled.mutate(SET_ENABLED, { id: r.id, enabled: !r.enabled })}>
                        {r.enabled ? 'disable' : 'enable'}
                      </button>
                    ) : (
                      <span className="eunomia-type">{r.enabled ? 'on' : 'off'}</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Panel>
    );
  };
}

export const SECCOMP_TITLE = 'Seccomp profiles';
const PROFILES_QUERY = '{ seccompProfiles { name calls source savedAt } }';
const DIFF_QUERY = `query($first: String!, $second: String!) {
  diffSeccompProfiles(first: $first, second: $second) { onlyInFirst onlyInSecond inBoth }
}`;
const PROFILE_QUERY = 'query($name: String!) { seccompProfile(name: $name) }';

export function SeccompIcon() {
  return <Icon d="M12 3l8 3v6c0 5-4 8-8 9-4-1-8-4-8-9V6z" />;
}

// Stored seccomp profiles: download one as OCI JSON, or diff two.
export function makeSeccomp(load) {
  return function Seccomp() {
    const polled = usePolled(load, PROFILES_QUERY);
    const [pair, setPair] = useState({ first: '', second: '' });
    const [diff, setDiff] = useState(null);
    const compare = async () => {
      const body = await load(DIFF_QUERY, pair);
      if (body.errors) polled.setError(body.errors[0].message);
      else setDiff(body.data.diffSeccompProfiles);
    };
    const download = async (name) => {
      const body = await load(PROFILE_QUERY, { name });
      if (body.errors) {
        polled.setError(body.errors[0].message);
        return;
      }
      saveFile(`${name}.json`, JSON.stringify(body.data.seccompProfile, null, 2), 'application/json');
    };
    return (
      <Panel title={SECCOMP_TITLE} className="eunomia-seccomp" polled={polled}>
        {({ seccompProfiles: profiles }) =>
          profiles.length === 0 ? (
            <p>No stored profiles: saveSeccompProfile stores one.</p>
          ) : (
            <>
              <table>
                <tbody>
                  {profiles.map((p) => (
                    <tr key={p.name} data-profile={p.name}>
                      <td>
                        <strong>{p.name}</strong>
                        <div className="eunomia-type">
                          {p.calls} calls; {p.source}; {p.savedAt}
                        </div>
                      </td>
                      <td>
                        <button type="button" className="eunomia-example" onClick={() => download(p.name)}>
                          JSON
                        </button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <div className="eunomia-diff">
                {['first', 'second'].map((side) => (
                  <select key={side} name={side} value={pair[side]} onChange={(e) => setPair({ ...pair, [side]: e.target.value })}>
                    <option value="">{side}</option>
                    {profiles.map((p) => (
                      <option key={p.name}>{p.name}</option>
                    ))}
                  </select>
                ))}
                <button type="button" className="eunomia-example" disabled={!pair.first || !pair.second} onClick={compare}>
                  diff
                </button>
              </div>
              {diff && (
                <dl className="eunomia-diff-result">
                  <dt>only in {pair.first}</dt>
                  <dd>{diff.onlyInFirst.join(' ') || 'none'}</dd>
                  <dt>only in {pair.second}</dt>
                  <dd>{diff.onlyInSecond.join(' ') || 'none'}</dd>
                  <dt>in both</dt>
                  <dd>{diff.inBoth.length} calls</dd>
                </dl>
              )}
            </>
          )
        }
      </Panel>
    );
  };
}

export const HEALTH_TITLE = 'Health';
const HEALTH_QUERY = `{ health { version kernel btf uptimeSecs activeSessions
  guard { running eventsSeen eventsLost bpfRunTimeNs cpuTimeNs failedTracker }
  store { ok lastError lastErrorAt failedBatches } } }`;

export function HealthIcon() {
  return <Icon d="M3 12h4l3-7 4 14 3-7h4" />;
}

export function makeHealth(load) {
  return function Health() {
    const polled = usePolled(load, HEALTH_QUERY);
    return (
      <Panel title={HEALTH_TITLE} className="eunomia-health" polled={polled}>
        {({ health: h }) => (
          <dl data-version={h.version}>
            <dt>server</dt>
            <dd>
              {h.version}, up {h.uptimeSecs} s, {h.activeSessions} sessions running
            </dd>
            <dt>kernel</dt>
            <dd>
              {h.kernel}, BTF {h.btf ? 'yes' : 'no'}
            </dd>
            <dt>store</dt>
            <dd data-store-ok={String(h.store.ok)}>
              {h.store.ok ? 'ok' : `failing: ${h.store.lastError} at ${h.store.lastErrorAt}`},{' '}
              {h.store.failedBatches} failed batches
            </dd>
            <dt>guard</dt>
            <dd>
              {h.guard.running
                ? `running: ${h.guard.eventsSeen} events, ${h.guard.eventsLost} lost, ` +
                  `BPF ${Math.round(h.guard.bpfRunTimeNs / 1e6)} ms, CPU ${Math.round(h.guard.cpuTimeNs / 1e6)} ms`
                : `off${h.guard.failedTracker ? ` (${h.guard.failedTracker} failed)` : ''}`}
            </dd>
          </dl>
        )}
      </Panel>
    );
  };
}
