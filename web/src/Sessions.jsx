import { useState } from 'react';
import { useEditorContext } from '@graphiql/react';
import { RESULTS_QUERY } from './Catalog';
import { NewSession } from './NewSession';
import { SessionChart } from './SessionChart';
import { Icon, Panel, usePolled } from './polled';

export const SESSIONS_TITLE = 'Sessions';

const LIST_QUERY = `{ me { role } sessions(first: 50) { nodes {
  id tracker label status store eventCount lostCount completeness endsAt } } }`;
const STOP = 'mutation($id: ID!) { stopSession(id: $id) { status } }';
const DELETE = 'mutation($id: ID!) { deleteSession(id: $id) }';

export function SessionsIcon() {
  return <Icon d="M12 4a8 8 0 1 0 0.01 0M12 7v5l3 3" />;
}

function timeLeft(session) {
  if (session.status !== 'RUNNING') return '';
  const secs = Math.max(0, Math.round((Date.parse(session.endsAt) - Date.now()) / 1000));
  return `${secs} s left`;
}

// The newest sessions with their counts. "open" puts the Results query for one into the
// editors, "chart" draws it; operators also get stop, delete and a new-session form.
export function makeSessions(load) {
  return function Sessions() {
    const { queryEditor, variableEditor } = useEditorContext({ nonNull: true });
    const polled = usePolled(load, LIST_QUERY);
    const [charted, setCharted] = useState(null);
    const [creating, setCreating] = useState(false);

    const open = (id) => {
      if (!queryEditor || !variableEditor) return;
      queryEditor.setValue(RESULTS_QUERY);
      variableEditor.setValue(JSON.stringify({ id }, null, 2));
    };

    return (
      <Panel title={SESSIONS_TITLE} className="eunomia-sessions" polled={polled}>
        {(data) => {
          const sessions = data.sessions.nodes;
          const operator = data.me.role === 'OPERATOR';
          const started = (id) => {
            setCreating(false);
            setCharted(id);
            polled.refresh();
          };
          return (
            <>
              {operator && (
                <button type="button" className="eunomia-example" data-action="new" onClick={() => setCreating(!creating)}>
                  new session
                </button>
              )}
              {creating && <NewSession load={load} onStarted={started} />}
              {sessions.length === 0 && <p>No sessions yet.</p>}
            <table>
              <tbody>
                {sessions.map((s) => (
                  <tr key={s.id} data-session={s.id} data-status={s.status}>
                    <td>
                      <strong>{s.tracker}</strong> {s.label ?? ''}
                      <div className="eunomia-type">
                        {s.status} {timeLeft(s)} {s.store}
                      </div>
                      <div className="eunomia-type">
                        {s.eventCount} events, {s.lostCount} lost,{' '}
                        {Math.round(s.completeness * 1000) / 10}% complete
                      </div>
                      {charted === s.id && <SessionChart load={load} id={s.id} />}
                    </td>
                    <td>
                      <button type="button" className="eunomia-example" data-action="open" onClick={() => open(s.id)}>
                        open
                      </button>
                      <button
                        type="button"
                        className="eunomia-example"
                        data-action="chart"
                        onClick={() => setCharted(charted === s.id ? null : s.id)}
                      >
                        chart
                      </button>
                      {operator && s.status === 'RUNNING' && (
                        <button type="button" className="eunomia-example" data-action="stop" onClick={() => polled.mutate(STOP, { id: s.id })}>
                          stop
                        </button>
                      )}
                      {operator && s.status !== 'RUNNING' && (
                        <button type="button" className="eunomia-example" data-action="delete" onClick={() => polled.mutate(DELETE, { id: s.id })}>
                          delete
                        </button>
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
