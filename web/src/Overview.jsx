import { useEditorContext } from '@graphiql/react';
import { Icon, Panel, usePolled } from './polled';

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
const ALERTS_QUERY = `{ alerts(first: 50) { nodes { id lastTs count rule severity technique tactic
  comm pid containerName output } } }`;

export function AlertsIcon() {
  return <Icon d="M12 4l9 16H3zM12 10v4M12 17v0.5" />;
}

// The newest alerts: severity, rule, MITRE technique and tactic, who, and the output.
export function makeAlerts(load) {
  return function Alerts() {
    const polled = usePolled(load, ALERTS_QUERY);
    return (
      <Panel title={ALERTS_TITLE} className="eunomia-alerts" polled={polled}>
        {({ alerts }) =>
          alerts.nodes.length === 0 ? (
            <p>No alerts.</p>
          ) : (
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
