import { type ReactNode, useCallback, useEffect, useRef, useState } from 'react';

// Panels read their data again this often while open, besides what their
// subscriptions push (a fallback for what no subscription reports).
export const REFRESH_MS = 2000;

export type Variables = Record<string, unknown>;

export interface GraphQLError {
  message: string;
  extensions?: { code?: string };
}

// One answer of the GraphQL endpoint. Panels know the shape of what they asked for.
export interface Answer<T> {
  data?: T;
  errors?: GraphQLError[];
}

// What every panel talks to the server through: one operation over HTTP with the
// token; `get` fetches another of the server's paths with it (the flame graph);
// `subscribe` runs a subscription over graphql-transport-ws and returns its stop.
export interface Load {
  <T>(query: string, variables?: Variables): Promise<Answer<T>>;
  get(path: string): Promise<Response>;
  subscribe<T>(
    query: string,
    variables: Variables,
    onNext: (data: T) => void,
    onError: (message: string) => void,
  ): () => void;
}

export interface Polled<T> {
  data: T | null;
  error: string | null;
  refresh: () => Promise<void>;
  setError: (error: string) => void;
  setData: (update: (old: T) => T) => void;
  mutate: (mutation: string, variables: Variables) => Promise<void>;
}

// `query`'s data, read now and every `everyMs` (REFRESH_MS; 0: only when asked) while
// the panel is mounted; the last good data stays shown beside an error. `refresh` reads
// at once; `mutate` runs a mutation and then reads; `setData` patches the data (what a
// subscription pushed).
export function usePolled<T>(load: Load, query: string, everyMs: number = REFRESH_MS): Polled<T> {
  const [state, setState] = useState<{ data: T | null; error: string | null }>({ data: null, error: null });
  // Answers can arrive out of order: one to a query the panel no longer asks (a picker
  // changed while it was in flight), or older than one already shown, is dropped.
  const current = useRef(query);
  current.current = query;
  const issued = useRef(0);
  const shown = useRef(0);
  const refresh = useCallback(async () => {
    const id = ++issued.current;
    const fresh = () => query === current.current && id > shown.current;
    try {
      const body = await load<T>(query);
      if (!fresh()) return;
      shown.current = id;
      if (body.errors) setState((old) => ({ ...old, error: body.errors![0].message }));
      else setState({ data: body.data ?? null, error: null });
    } catch (err) {
      if (fresh()) setState((old) => ({ ...old, error: String(err) }));
    }
  }, [load, query]);
  useEffect(() => {
    refresh();
    if (!everyMs) return undefined;
    const timer = setInterval(refresh, everyMs);
    return () => clearInterval(timer);
  }, [refresh, everyMs]);
  const setError = (error: string) => setState((old) => ({ ...old, error }));
  const setData = (update: (old: T) => T) =>
    setState((old) => (old.data === null ? old : { ...old, data: update(old.data) }));
  const mutate = async (mutation: string, variables: Variables) => {
    const body = await load(mutation, variables);
    if (body.errors) setError(body.errors[0].message);
    refresh();
  };
  return { ...state, refresh, setError, setData, mutate };
}

// Runs `query` as a subscription while mounted (again when it or `variables` change),
// handing each message's data to `onNext`; returns the last error. The handler may
// change between renders without resubscribing.
export function useSubscription<T>(
  load: Load,
  query: string,
  variables: Variables,
  onNext: (data: T) => void,
): string | null {
  const [error, setError] = useState<string | null>(null);
  const handler = useRef(onNext);
  handler.current = onNext;
  const key = JSON.stringify(variables);
  useEffect(() => {
    setError(null);
    return load.subscribe<T>(query, JSON.parse(key) as Variables, (data) => handler.current(data), setError);
  }, [load, query, key]);
  return error;
}

// A panel's frame: its title, the last error, and `children` once there is data.
export function Panel<T>({
  title,
  className,
  polled,
  children,
}: {
  title: string;
  className: string;
  polled: Polled<T>;
  children: (data: T) => ReactNode;
}) {
  return (
    <div className={`eunomia-panel ${className}`}>
      <div className="graphiql-doc-explorer-title">{title}</div>
      {polled.error && <div className="eunomia-catalog-error">{polled.error}</div>}
      {polled.data ? children(polled.data) : !polled.error && <div>Loading...</div>}
    </div>
  );
}

// The console's small text button; `action` names it for tests (`data-action`).
export function Action({ action, onClick, children }: { action: string; onClick: () => void; children: ReactNode }) {
  return (
    <button type="button" className="eunomia-example" data-action={action} onClick={onClick}>
      {children}
    </button>
  );
}

export function Icon({ d }: { d: string }) {
  return (
    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
      <path d={d} stroke="currentColor" strokeWidth="2" fill="none" strokeLinecap="round" />
    </svg>
  );
}

// Hands `text` to the browser as a file download named `name`.
export function saveFile(name: string, text: string, type: string) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  URL.revokeObjectURL(link.href);
}
