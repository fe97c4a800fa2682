import { useEffect, useState } from 'react';
import { useEditorContext } from '@graphiql/react';
import { RESULTS_QUERY } from './Catalog';
import { NewSession } from './NewSession';
import { SessionChart } from './SessionChart';
import { Action, Icon, type Load, Panel, usePolled, useSubscription } from './polled';
import type { Role, SessionRow } from './schema';

export const SESSIONS_TITLE = 'Sessions';

const ROW = 'id tracker label status store eventCount lostCount completeness endsAt';
const LIST_QUERY = `{ me { role } sessions(first: 50) { nodes { ${ROW} } } }`;
// Every session's status and counts, pushed about once a second while it runs and when
// it ends.
const UPDATES = `subscription { sessionUpdated { ${ROW} } }`;
const STOP = 'mutation($id: ID!) { stopSession(id: $id) { status } }';
const DELETE = 'mutation($id: ID!) { deleteSession(id: $id) }';
// The list is read again this rarely: updates arrive through UPDATES, and this only
// catches sessions deleted elsewhere.
const LIST_REFRESH_MS = 30_000;

interface ListData {
  me: { role: Role };
  sessions: { nodes: SessionRow[] };
}

export function SessionsIcon() {
  return <Icon d="M12 4a8 8 0 1 0 0.01 0M12 7v5l3 3" />;
}

function timeLeft(session: SessionRow, now: number) {
  if (session.status !== 'RUNNING') return '';
  const secs = Math.max(0, Math.round((Date.parse(session.endsAt) - now) / 1000));
  return `${secs} s left`;
}

// The current time, again every second while mounted (for "time left").
function useNow() {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  return now;
}

// The newest sessions with their counts, kept current by `sessionUpdated`. "open" puts the
// Results query for one into the editors, "chart" draws it; operators also get stop,
// delete and a new-session form.
export function makeSessions(load: Load) {
  return function Sessions() {
    const { queryEditor, variableEditor } = useEditorContext({ nonNull: true });
    const polled = usePolled<ListData>(load, LIST_QUERY, LIST_REFRESH_MS);
    const [charted, setCharted] = useState<string | null>(null);
    const [creating, setCreating] = useState(false);
    const now = useNow();
    const live = useSubscription<{ sessionUpdated: SessionRow }>(load, UPDATES, {}, ({ sessionUpdated: update }) => {
      const known = polled.data?.sessions.nodes.some((s) => s.id === update.id);
      // A session started elsewhere: read the list (with its order) again.
      if (!known) polled.refresh();
      else
        polled.setData((data) => ({
          ...data,
          sessions: { nodes: data.sessions.nodes.map((s) => (s.id === update.id ? update : s)) },
        }));
    });

    const open = (id: string) => {
      if (!queryEditor || !variableEditor) return;
      queryEditor.setValue(RESULTS_QUERY);
      variableEditor.setValue(JSON.stringify({ id }, null, 2));
    };

    return (
      <Panel title={SESSIONS_TITLE} className="eunomia-sessions" polled={polled}>
        {(data) => {
          const sessions = data.sessions.nodes;
          const operator = data.me.role === 'OPERATOR';
          const started = (id: string) => {
            setCreating(false);
            setCharted(id);
            polled.refresh();
          };
          return (
            <>
              {live && <div className="eunomia-catalog-error">live updates: {live}</div>}
              {operator && (
                <Action action="new" onClick={() => setCreating(!creating)}>
                  new session
                </Action>
              )}
              {creating && <NewSession load={load} onStarted={started} />}
              {sessions.length === 0 && <p>No sessions yet.</p>}
              <table>
                <tbody>
                  {sessions.map((s) => (
                    <tr key={s.id} data-session={s.id} data-status={s.status} data-events={s.eventCount}>
                      <td>
                        <strong>{s.tracker}</strong> {s.label ?? ''}
                        <div className="eunomia-type">
                          {s.status} {timeLeft(s, now)} {s.store}
                        </div>
                        <div className="eunomia-type">
                          {s.eventCount} events, {s.lostCount} lost, {Math.round(s.completeness * 1000) / 10}% complete
                        </div>
                        {charted === s.id && <SessionChart load={load} id={s.id} onClose={() => setCharted(null)} />}
                      </td>
                      <td>
                        <Action action="open" onClick={() => open(s.id)}>
                          open
                        </Action>
                        <Action action="chart" onClick={() => setCharted(charted === s.id ? null : s.id)}>
                          chart
                        </Action>
                        {operator && s.status === 'RUNNING' && (
                          <Action action="stop" onClick={() => polled.mutate(STOP, { id: s.id })}>
                            stop
                          </Action>
                        )}
                        {operator && s.status !== 'RUNNING' && s.status !== 'STARTING' && (
                          <Action action="delete" onClick={() => polled.mutate(DELETE, { id: s.id })}>
                            delete
                          </Action>
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          );
        }}
      </Panel>
    );
  };
}
