import { useState } from 'react';
import { useEditorContext } from '@graphiql/react';
import { Action, Icon, type Load, Panel, saveFile, usePolled, useSubscription } from './polled';
import type { Role } from './schema';

// The trackers a container's "trace" buttons start.
const TRACE = ['process', 'syscall', 'tcp', 'files'];

export const CONTAINERS_TITLE = 'Containers';
const CONTAINERS_QUERY = `{ containers { id name image runtime state pids
  namespaces { pid mnt net user uts } } }`;

interface Namespaces {
  pid: number | null;
  mnt: number | null;
  net: number | null;
  user: number | null;
  uts: number | null;
}

interface Container {
  id: string;
  name: string | null;
  image: string | null;
  runtime: string;
  state: string;
  pids: number[];
  namespaces: Namespaces;
}

// "pid:4026532571 mnt:..." for the namespaces that are known.
function namespaceText(ns: Namespaces) {
  return (Object.entries(ns) as [string, number | null][])
    .filter(([, inode]) => inode !== null)
    .map(([kind, inode]) => `${kind}:${inode}`)
    .join(' ');
}

export function ContainersIcon() {
  return <Icon d="M4 7h16v12H4zM8 7V4h8v3" />;
}

// A Start mutation for `tracker` on one container (its restarts followed).
function traceContainer(tracker: string, container: Container) {
  const query = `# ${tracker} in container ${container.name ?? container.id}
mutation Trace($tracker: String!, $container: String!) {
  startSession(input: {tracker: $tracker, durationSecs: 30, store: MEMORY,
                       filter: {container: $container}}) { id status endsAt }
}
`;
  return { query, variables: JSON.stringify({ tracker, container: container.id }, null, 2) };
}

export function makeContainers(load: Load) {
  return function Containers() {
    const { queryEditor, variableEditor } = useEditorContext({ nonNull: true });
    const polled = usePolled<{ containers: Container[] }>(load, CONTAINERS_QUERY);
    const trace = (tracker: string, container: Container) => {
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
                      <div className="eunomia-type" data-namespaces={namespaceText(c.namespaces)}>
                        namespaces {namespaceText(c.namespaces) || 'unknown'}
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

const ALERT_FIELDS = `id lastTs count rule severity technique techniqueName tactic comm pid exe
  containerId containerName output event`;

interface AlertsFilter {
  minSeverity: string;
  // A rule id, and a container's name or id prefix; empty for any.
  rule: string;
  container: string;
}

function alertsQuery(f: AlertsFilter) {
  const rule = f.rule ? `, rule: ${JSON.stringify(f.rule)}` : '';
  const container = f.container ? `, container: ${JSON.stringify(f.container)}` : '';
  return `{ alerts(first: 50, filter: {minSeverity: ${f.minSeverity}${rule}${container}}) { nodes { ${ALERT_FIELDS} } } }`;
}

// Whether a pushed alert passes the filters the list was read with (the subscription
// filters by severity only).
function passes(alert: Alert, f: AlertsFilter) {
  const inContainer =
    !f.container || alert.containerName === f.container || (alert.containerId ?? '').startsWith(f.container);
  return (!f.rule || alert.rule === f.rule) && inContainer;
}
// New alerts as they are raised: the panel shows them at once, without reading the list.
const RAISED = `subscription($least: Severity) { alertRaised(minSeverity: $least) { ${ALERT_FIELDS} } }`;
// The list is read again this rarely: new alerts come through RAISED, and this catches
// repeats counted up in stored alerts (which are not sent again).
const ALERTS_REFRESH_MS = 30_000;
// The most alerts shown.
const ALERTS_SHOWN = 50;

interface Alert {
  id: string;
  lastTs: string;
  count: number;
  rule: string;
  severity: string;
  technique: string;
  techniqueName: string;
  tactic: string;
  comm: string;
  pid: number;
  exe: string | null;
  containerId: string | null;
  containerName: string | null;
  output: string;
  event: unknown;
}

export function AlertsIcon() {
  return <Icon d="M12 4l9 16H3zM12 10v4M12 17v0.5" />;
}

// The newest alerts at or above a severity: rule, MITRE technique and tactic, who, the
// output, and the triggering event on a click.
export function makeAlerts(load: Load) {
  return function Alerts() {
    const [filter, setFilter] = useState<AlertsFilter>({ minSeverity: 'INFO', rule: '', container: '' });
    const [shown, setShown] = useState<string | null>(null);
    const polled = usePolled<{ alerts: { nodes: Alert[] } }>(load, alertsQuery(filter), ALERTS_REFRESH_MS);
    const live = useSubscription<{ alertRaised: Alert }>(
      load,
      RAISED,
      { least: filter.minSeverity },
      ({ alertRaised: alert }) =>
        passes(alert, filter) &&
        polled.setData((data) => ({
          alerts: { nodes: [alert, ...data.alerts.nodes.filter((a) => a.id !== alert.id)].slice(0, ALERTS_SHOWN) },
        })),
    );
    const set = (key: keyof AlertsFilter) => (event: { target: { value: string } }) =>
      setFilter({ ...filter, [key]: event.target.value.trim() });
    return (
      <Panel title={ALERTS_TITLE} className="eunomia-alerts" polled={polled}>
        {({ alerts }) => (
          <>
            {live && <div className="eunomia-catalog-error">live alerts: {live}</div>}
            <div className="eunomia-alert-filters">
              <label>
                at least{' '}
                <select name="minSeverity" value={filter.minSeverity} onChange={set('minSeverity')}>
                  {SEVERITIES.map((s) => (
                    <option key={s}>{s}</option>
                  ))}
                </select>
              </label>
              <input name="rule" placeholder="rule id" defaultValue={filter.rule} onBlur={set('rule')} />
              <input name="container" placeholder="container" defaultValue={filter.container} onBlur={set('container')} />
            </div>
            {alerts.nodes.length === 0 && <p>No alerts.</p>}
            <table>
              <tbody>
                {alerts.nodes.map((a) => (
                  <tr key={a.id} data-alert={a.id} data-severity={a.severity} data-rule={a.rule}>
                    <td>
                      <strong className={`eunomia-severity-${a.severity}`}>{a.severity}</strong> {a.rule}
                      {a.count > 1 ? ` (x${a.count})` : ''}
                      <div className="eunomia-type" title={a.techniqueName}>
                        {a.technique} {a.techniqueName} ({a.tactic})
                      </div>
                      <div className="eunomia-type">
                        {a.comm} ({a.pid}){a.exe ? ` ${a.exe}` : ''}
                        {a.containerName ? ` in ${a.containerName}` : ''}; {a.lastTs}
                      </div>
                      <div>{a.output}</div>
                      <Action action="event" onClick={() => setShown(shown === a.id ? null : a.id)}>
                        event
                      </Action>
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

interface Rule {
  id: string;
  name: string;
  severity: string;
  enabled: boolean;
  hits: number;
  mitre: { technique: string; name: string; tactic: string };
}

// The detection rules with their hits; operators turn them on and off.
export function makeRules(load: Load) {
  return function Rules() {
    const polled = usePolled<{ me: { role: Role }; rules: Rule[] }>(load, RULES_QUERY);
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
                      <Action action="toggle" onClick={() => polled.mutate(SET_ENABLED, { id: r.id, enabled: !r.enabled })}>
                        {r.enabled ? 'disable' : 'enable'}
                      </Action>
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

interface Profile {
  name: string;
  calls: number;
  source: string;
  savedAt: string;
}

interface Diff {
  onlyInFirst: string[];
  onlyInSecond: string[];
  inBoth: string[];
}

// Stored seccomp profiles: download one as OCI JSON, or diff two.
export function makeSeccomp(load: Load) {
  return function Seccomp() {
    const polled = usePolled<{ seccompProfiles: Profile[] }>(load, PROFILES_QUERY);
    const [pair, setPair] = useState({ first: '', second: '' });
    const [diff, setDiff] = useState<Diff | null>(null);
    const compare = async () => {
      const body = await load<{ diffSeccompProfiles: Diff }>(DIFF_QUERY, pair);
      if (body.errors || !body.data) polled.setError(body.errors?.[0].message ?? 'no data');
      else setDiff(body.data.diffSeccompProfiles);
    };
    const download = async (name: string) => {
      const body = await load<{ seccompProfile: unknown }>(PROFILE_QUERY, { name });
      if (body.errors || !body.data) {
        polled.setError(body.errors?.[0].message ?? 'no data');
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
                {(['first', 'second'] as const).map((side) => (
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
  store { ok lastError lastErrorAt failedBatches }
  lost { tracker stage events } } }`;

interface Health {
  version: string;
  kernel: string;
  btf: boolean;
  uptimeSecs: number;
  activeSessions: number;
  guard: {
    running: boolean;
    eventsSeen: number;
    eventsLost: number;
    bpfRunTimeNs: number;
    cpuTimeNs: number;
    failedTracker: string | null;
  };
  store: { ok: boolean; lastError: string | null; lastErrorAt: string | null; failedBatches: number };
  lost: { tracker: string; stage: string; events: number }[];
}

export function HealthIcon() {
  return <Icon d="M3 12h4l3-7 4 14 3-7h4" />;
}

export function makeHealth(load: Load) {
  return function Health() {
    const polled = usePolled<{ health: Health }>(load, HEALTH_QUERY);
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
            <dt>events lost since start</dt>
            <dd className="eunomia-losses">
              {h.lost.length === 0 ? (
                'none'
              ) : (
                <table>
                  <tbody>
                    {h.lost.map((l) => (
                      <tr key={`${l.tracker}/${l.stage}`} data-tracker={l.tracker} data-stage={l.stage}>
                        <td>{l.tracker}</td>
                        <td>{l.stage}</td>
                        <td>{l.events}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </dd>
          </dl>
        )}
      </Panel>
    );
  };
}
