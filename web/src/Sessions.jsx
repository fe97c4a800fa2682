import { useCallback, useEffect, useState } from 'react';
import { useEditorContext } from '@graphiql/react';
import { RESULTS_QUERY } from './Catalog';

export const SESSIONS_TITLE = 'Sessions';

const LIST_QUERY = `{ me { role } sessions(first: 50) { nodes {
  id tracker label status store eventCount lostCount completeness endsAt } } }`;
const STOP = 'mutation($id: ID!) { stopSession(id: $id) { status } }';
const DELETE = 'mutation($id: ID!) { deleteSession(id: $id) }';
// The list is read again this often while the panel is open.
const REFRESH_MS = 2000;

export function SessionsIcon() {
  return (
    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
      <circle cx="12" cy="12" r="8" stroke="currentColor" strokeWidth="2" fill="none" />
      <path d="M12 7v5l3 3" stroke="currentColor" strokeWidth="2" fill="none" strokeLinecap="round" />
    </svg>
  );
}

function timeLeft(session) {
  if (session.status !== 'RUNNING') return '';
  const secs = Math.max(0, Math.round((Date.parse(session.endsAt) - Date.now()) / 1000));
  return `${secs} s left`;
}

// The panel: the newest sessions with their counts, read every REFRESH_MS. "open" puts
// the Results query for one into the editors; operators also get Stop and Delete.
export function makeSessions(load) {
  return function Sessions() {
    const { queryEditor, variableEditor } = useEditorContext({ nonNull: true });
    const [state, setState] = useState({ sessions: null, role: null, error: null });

    const refresh = useCallback(async () => {
      try {
        const body = await load(LIST_QUERY);
        if (body.errors) setState((old) => ({ ...old, error: body.errors[0].message }));
        else setState({ sessions: body.data.sessions.nodes, role: body.data.me.role, error: null });
      } catch (err) {
        setState((old) => ({ ...old, error: String(err) }));
      }
    }, []);

    useEffect(() => {
      refresh();
      const timer = setInterval(refresh, REFRESH_MS);
      return () => clearInterval(timer);
    }, [refresh]);

    const act = async (mutation, id) => {
      const body = await load(mutation, { id });
      if (body.errors) setState((old) => ({ ...old, error: body.errors[0].message }));
      refresh();
    };
    const open = (id) => {
      if (!queryEditor || !variableEditor) return;
      queryEditor.setValue(RESULTS_QUERY);
      variableEditor.setValue(JSON.stringify({ id }, null, 2));
    };

    if (!state.sessions) {
      return <div className="eunomia-sessions">{state.error ?? 'Loading the sessions...'}</div>;
    }
    const operator = state.role === 'OPERATOR';
    return (
      <div className="eunomia-sessions">
        <div className="graphiql-doc-explorer-title">{SESSIONS_TITLE}</div>
        {state.error && <div className="eunomia-catalog-error">{state.error}</div>}
        {state.sessions.length === 0 && <p>No sessions yet: the catalog's examples start one.</p>}
        <table>
          <tbody>
            {state.sessions.map((s) => (
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
                </td>
                <td>
                  <button type="button" className="eunomia-example" data-action="open" onClick={() => open(s.id)}>
                    open
                  </button>
                  {operator && s.status === 'RUNNING' && (
                    <button type="button" className="eunomia-example" data-action="stop" onClick={() => act(STOP, s.id)}>
                      stop
                    </button>
                  )}
                  {operator && s.status !== 'RUNNING' && (
                    <button type="button" className="eunomia-example" data-action="delete" onClick={() => act(DELETE, s.id)}>
                      delete
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    );
  };
}
