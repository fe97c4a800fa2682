import { useEffect, useState } from 'react';

const FORM_QUERY = '{ trackers { name options { name type default description } } containers { id name } }';
const START = `mutation($input: StartSessionInput!) {
  startSession(input: $input) { id status }
}`;

// The form an operator starts a session with: tracker, duration, store, label, a filter
// (comm, pid or a running container) and the tracker's options as JSON, each option
// listed with its type and default from the catalog.
export function NewSession({ load, onStarted }) {
  const [catalog, setCatalog] = useState(null);
  const [form, setForm] = useState({
    tracker: 'process',
    durationSecs: 30,
    store: 'MEMORY',
    label: '',
    comm: '',
    pid: '',
    container: '',
    config: '{}',
  });
  const [error, setError] = useState(null);

  useEffect(() => {
    load(FORM_QUERY).then((body) => {
      if (body.errors) setError(body.errors[0].message);
      else setCatalog(body.data);
    });
  }, [load]);

  const set = (key) => (event) => setForm({ ...form, [key]: event.target.value });

  const submit = async (event) => {
    event.preventDefault();
    let config;
    try {
      config = JSON.parse(form.config || '{}');
    } catch {
      setError('options: not JSON');
      return;
    }
    const filter = {};
    if (form.comm) filter.comm = form.comm;
    if (form.pid) filter.pid = Number(form.pid);
    if (form.container) filter.container = form.container;
    const input = {
      tracker: form.tracker,
      durationSecs: Number(form.durationSecs),
      store: form.store,
      config,
      ...(form.label ? { label: form.label } : {}),
      ...(Object.keys(filter).length ? { filter } : {}),
    };
    const body = await load(START, { input });
    if (body.errors) {
      setError(body.errors[0].message);
    } else {
      setError(null);
      onStarted(body.data.startSession.id);
    }
  };

  if (!catalog) return <div className="eunomia-new-session">{error ?? 'Loading...'}</div>;
  const tracker = catalog.trackers.find((t) => t.name === form.tracker);
  return (
    <form className="eunomia-new-session" onSubmit={submit}>
      <label>
        tracker{' '}
        <select name="tracker" value={form.tracker} onChange={set('tracker')}>
          {catalog.trackers.map((t) => (
            <option key={t.name}>{t.name}</option>
          ))}
        </select>
      </label>
      <label>
        seconds <input name="durationSecs" type="number" min="1" value={form.durationSecs} onChange={set('durationSecs')} />
      </label>
      <label>
        store{' '}
        <select name="store" value={form.store} onChange={set('store')}>
          <option>MEMORY</option>
          <option>SQLITE</option>
        </select>
      </label>
      <label>
        label <input name="label" value={form.label} onChange={set('label')} />
      </label>
      <label>
        comm <input name="comm" value={form.comm} onChange={set('comm')} />
      </label>
      <label>
        pid <input name="pid" type="number" min="1" value={form.pid} onChange={set('pid')} />
      </label>
      <label>
        container{' '}
        <select name="container" value={form.container} onChange={set('container')}>
          <option value="">any</option>
          {catalog.containers.map((c) => (
            <option key={c.id} value={c.id}>
              {c.name ?? c.id.slice(0, 12)}
            </option>
          ))}
        </select>
      </label>
      <label>
        options (JSON) <textarea name="config" rows="2" value={form.config} onChange={set('config')} />
      </label>
      {tracker?.options.length > 0 && (
        <ul className="eunomia-type">
          {tracker.options.map((o) => (
            <li key={o.name} title={o.description}>
              {o.name}: {o.type}, default {JSON.stringify(o.default)}
            </li>
          ))}
        </ul>
      )}
      {error && <div className="eunomia-catalog-error">{error}</div>}
      <button type="submit" className="eunomia-example" data-action="start">
        start
      </button>
    </form>
  );
}
