import { type ChangeEvent, type FormEvent, useEffect, useState } from 'react';
import type { Load } from './polled';
import type { ContainerRef, Tracker, TrackerOption } from './schema';

const FORM_QUERY = `{ trackers { name options { name type values default description } }
  containers { id name } }`;
const START = `mutation($input: StartSessionInput!) {
  startSession(input: $input) { id status }
}`;

interface Catalog {
  trackers: Pick<Tracker, 'name' | 'options'>[];
  containers: ContainerRef[];
}

interface Form {
  tracker: string;
  durationSecs: string;
  store: string;
  label: string;
  comm: string;
  pid: string;
  container: string;
}

// An option's value as typed into its input, or an error saying why it is not one.
// Empty means "leave it out" (the tracker's default).
function optionValue(option: TrackerOption, text: string): { value?: unknown; error?: string } {
  if (text === '') return {};
  const one = (type: string, item: string): { value?: unknown; error?: string } => {
    if (type === 'boolean') return { value: item === 'true' };
    if (type === 'integer') {
      return /^-?\d+$/.test(item) ? { value: Number(item) } : { error: `${option.name}: ${item} is no integer` };
    }
    return { value: item };
  };
  const list = option.type.match(/^\[(.*)\]$/);
  if (!list) return one(option.type, text);
  const items = text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)
    .map((item) => one(list[1], item));
  const bad = items.find((item) => item.error);
  return bad ?? { value: items.map((item) => item.value) };
}

// One option's input: a choice for booleans and enums, a number or text otherwise (a
// list as comma-separated items). Blank keeps the tracker's default.
function OptionInput({
  option,
  value,
  onChange,
}: {
  option: TrackerOption;
  value: string;
  onChange: (event: ChangeEvent<HTMLInputElement | HTMLSelectElement>) => void;
}) {
  const name = `option-${option.name}`;
  const choices = option.type === 'boolean' ? ['true', 'false'] : option.type === 'enum' ? option.values : null;
  return (
    <label title={option.description}>
      {option.name}{' '}
      {choices ? (
        <select name={name} value={value} onChange={onChange}>
          <option value="">default ({JSON.stringify(option.default)})</option>
          {choices.map((c) => (
            <option key={c}>{c}</option>
          ))}
        </select>
      ) : (
        <input
          name={name}
          type={option.type === 'integer' ? 'number' : 'text'}
          placeholder={`${option.type}, default ${JSON.stringify(option.default)}`}
          value={value}
          onChange={onChange}
        />
      )}
    </label>
  );
}

// The form an operator starts a session with: tracker, duration, store, label, a filter
// (comm, pid or a running container) and an input per option of the tracker, each
// described by the catalog (type, values, default).
export function NewSession({ load, onStarted }: { load: Load; onStarted: (id: string) => void }) {
  const [catalog, setCatalog] = useState<Catalog | null>(null);
  const [form, setForm] = useState<Form>({
    tracker: 'process',
    durationSecs: '30',
    store: 'MEMORY',
    label: '',
    comm: '',
    pid: '',
    container: '',
  });
  const [options, setOptions] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    load<Catalog>(FORM_QUERY).then((body) => {
      if (body.errors || !body.data) setError(body.errors?.[0].message ?? 'no data');
      else setCatalog(body.data);
    });
  }, [load]);

  const set = (key: keyof Form) => (event: ChangeEvent<HTMLInputElement | HTMLSelectElement>) => {
    setForm({ ...form, [key]: event.target.value });
    // Another tracker's options do not carry over.
    if (key === 'tracker') setOptions({});
  };
  const tracker = catalog?.trackers.find((t) => t.name === form.tracker);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const config: Record<string, unknown> = {};
    for (const option of tracker?.options ?? []) {
      const { value, error: bad } = optionValue(option, options[option.name] ?? '');
      if (bad) {
        setError(bad);
        return;
      }
      if (value !== undefined) config[option.name] = value;
    }
    const filter: Record<string, unknown> = {};
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
    const body = await load<{ startSession: { id: string } }>(START, { input });
    if (body.errors || !body.data) {
      setError(body.errors?.[0].message ?? 'no data');
    } else {
      setError(null);
      onStarted(body.data.startSession.id);
    }
  };

  if (!catalog) return <div className="eunomia-new-session">{error ?? 'Loading...'}</div>;
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
      {tracker && tracker.options.length > 0 && (
        <fieldset className="eunomia-options">
          <legend>{tracker.name} options</legend>
          {tracker.options.map((o) => (
            <OptionInput
              key={o.name}
              option={o}
              value={options[o.name] ?? ''}
              onChange={(event) => setOptions({ ...options, [o.name]: event.target.value })}
            />
          ))}
        </fieldset>
      )}
      {error && <div className="eunomia-catalog-error">{error}</div>}
      <button type="submit" className="eunomia-example" data-action="start">
        start
      </button>
    </form>
  );
}
