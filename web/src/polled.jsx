import { useCallback, useEffect, useState } from 'react';

// Panels read their data again this often while open.
export const REFRESH_MS = 2000;

// `query`'s data, read now and every REFRESH_MS while the panel is mounted; the last
// good data stays shown beside an error. `refresh` reads at once; `mutate` runs a
// mutation and then reads.
export function usePolled(load, query) {
  const [state, setState] = useState({ data: null, error: null });
  const refresh = useCallback(async () => {
    try {
      const body = await load(query);
      if (body.errors) setState((old) => ({ ...old, error: body.errors[0].message }));
      else setState({ data: body.data, error: null });
    } catch (err) {
      setState((old) => ({ ...old, error: String(err) }));
    }
  }, [load, query]);
  useEffect(() => {
    refresh();
    const timer = setInterval(refresh, REFRESH_MS);
    return () => clearInterval(timer);
  }, [refresh]);
  const setError = (error) => setState((old) => ({ ...old, error }));
  // Runs a mutation the panel offers, shows its error if any, and reads the data again.
  const mutate = async (mutation, variables) => {
    const body = await load(mutation, variables);
    if (body.errors) setError(body.errors[0].message);
    refresh();
  };
  return { ...state, refresh, setError, mutate };
}

// A panel's frame: its title, the last error, and `children` once there is data.
export function Panel({ title, className, polled, children }) {
  return (
    <div className={`eunomia-panel ${className}`}>
      <div className="graphiql-doc-explorer-title">{title}</div>
      {polled.error && <div className="eunomia-catalog-error">{polled.error}</div>}
      {polled.data ? children(polled.data) : !polled.error && <div>Loading...</div>}
    </div>
  );
}

export function Icon({ d }) {
  return (
    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
      <path d={d} stroke="currentColor" strokeWidth="2" fill="none" strokeLinecap="round" />
    </svg>
  );
}

// Hands `text` to the browser as a file download named `name`.
export function saveFile(name, text, type) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  URL.revokeObjectURL(link.href);
}
