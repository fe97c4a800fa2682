import { useEffect, useState } from 'react';
import { useEditorContext } from '@graphiql/react';
import type { Load } from './polled';
import type { Tracker } from './schema';

// The catalog as `trackers` gives it: what groupBy, field and where take, and what a
// session's config takes, per tracker.
const CATALOG_QUERY = `{ trackers { name description weight
  fields { name type description measure } options { name type default description } } }`;

export const CATALOG_TITLE = 'Trackers and fields';

// What a session saw: status, counts, top groups, a filled timeseries, the first events.
export const RESULTS_QUERY = `query Results($id: ID!) {
  session(id: $id) {
    status eventCount lostCount completeness
    aggregate(groupBy: ["kind", "comm"], top: 10) { keys count }
    chart: timeseries(bucketSecs: 1, fill: true) { start count }
    events(first: 10) { edges { node { ts kind pid comm data } } }
  }
}
`;

// A tracker's example: start a short session, then ask what it saw. Made from the
// catalog, so that every tracker has one and none goes stale.
export function example(tracker: Tracker) {
  const query = `# ${tracker.name}: ${tracker.description}
# Run Start (an operator's token), put the id it returns into the variables, then
# run Results while the session runs or after it ended.
mutation Start($tracker: String!) {
  startSession(input: {tracker: $tracker, durationSecs: 10, store: MEMORY}) {
    id status endsAt
  }
}

${RESULTS_QUERY}`;
  const variables = JSON.stringify({ tracker: tracker.name, id: 'the id Start returned' }, null, 2);
  return { query, variables };
}

export function CatalogIcon() {
  return (
    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
      <path
        d="M4 5h16M4 12h16M4 19h10"
        stroke="currentColor"
        strokeWidth="2"
        fill="none"
        strokeLinecap="round"
      />
    </svg>
  );
}

// The panel: each tracker's fields and options. GraphiQL completes the schema's names;
// field names are string values it cannot know, so a click on one writes it, quoted,
// at the query editor's cursor.
export function makeCatalog(load: Load) {
  return function Catalog() {
    const { queryEditor, variableEditor } = useEditorContext({ nonNull: true });
    const [state, setState] = useState<{ trackers: Tracker[] | null; error: string | null }>({
      trackers: null,
      error: null,
    });

    useEffect(() => {
      let live = true;
      load<{ trackers: Tracker[] }>(CATALOG_QUERY)
        .then((body) => {
          if (!live) return;
          if (body.errors || !body.data) setState({ trackers: null, error: body.errors?.[0].message ?? 'no data' });
          else setState({ trackers: body.data.trackers, error: null });
        })
        .catch((err) => live && setState({ trackers: null, error: String(err) }));
      return () => {
        live = false;
      };
    }, []);

    const insert = (name: string) => {
      if (!queryEditor) return;
      queryEditor.replaceSelection(JSON.stringify(name));
      queryEditor.focus();
    };

    const open = (tracker: Tracker) => {
      if (!queryEditor || !variableEditor) return;
      const { query, variables } = example(tracker);
      queryEditor.setValue(query);
      variableEditor.setValue(variables);
      queryEditor.focus();
    };

    if (state.error) return <div className="eunomia-catalog-error">{state.error}</div>;
    if (!state.trackers) return <div>Loading the catalog...</div>;
    return (
      <div className="eunomia-catalog">
        <div className="graphiql-doc-explorer-title">{CATALOG_TITLE}</div>
        <p>
          Click a field to write its name at the cursor (groupBy, field, where); "example"
          replaces the editors with an operation that starts the tracker and asks what it saw.
        </p>
        {state.trackers.map((tracker) => (
          <details key={tracker.name} data-tracker={tracker.name}>
            <summary>
              <strong>{tracker.name}</strong> {tracker.description}
            </summary>
            <button
              type="button"
              className="eunomia-example"
              data-example={tracker.name}
              onClick={() => open(tracker)}
            >
              example
            </button>
            <ul>
              {tracker.fields.map((field) => (
                <li key={field.name}>
                  <button
                    type="button"
                    className="eunomia-field"
                    data-field={field.name}
                    title={field.description}
                    onClick={() => insert(field.name)}
                  >
                    {field.name}
                  </button>{' '}
                  <span className="eunomia-type">
                    {field.type}
                    {field.measure ? ', measure' : ''}
                    {tracker.weight === field.name ? ', weight' : ''}
                  </span>
                </li>
              ))}
            </ul>
            {tracker.options.length > 0 && (
              <>
                <div>options (startSession's config)</div>
                <ul>
                  {tracker.options.map((option) => (
                    <li key={option.name} title={option.description}>
                      <code>{option.name}</code>{' '}
                      <span className="eunomia-type">
                        {option.type}, default {JSON.stringify(option.default)}
                      </span>
                    </li>
                  ))}
                </ul>
              </>
            )}
          </details>
        ))}
      </div>
    );
  };
}
