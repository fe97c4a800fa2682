import { useEffect, useRef, useState } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { LiveEvents } from './LiveEvents';
import { type Format, formatValue } from './format';
import { Action, type Load, saveFile, usePolled } from './polled';
import type { Field, Tracker } from './schema';

// What the bars apply to each group: COUNT counts events, the rest take a numeric field.
const OPS = ['COUNT', 'SUM', 'AVG', 'MIN', 'MAX', 'P50', 'P95', 'P99'] as const;
type Op = (typeof OPS)[number];

interface Bucket {
  start: string;
  count: number;
}

interface AggRow {
  keys: string[];
  value: number;
  count: number;
}

interface HistogramRow {
  count: number;
  buckets: { low: number | null; le: number; count: number }[];
}

interface ChartData {
  session: {
    tracker: string;
    status: string;
    kinds: { keys: string[]; count: number }[];
    timeseries: Bucket[];
    aggregate: AggRow[];
    histogram?: HistogramRow[];
  };
  trackers: Pick<Tracker, 'name' | 'stackMeasure' | 'fields'>[];
}

interface Picked {
  // Only events of this kind ('' for all) in the line, the bars and the histogram.
  kind: string;
  groupBy: string;
  op: Op;
  // The field `op` applies to (not COUNT), and the field drawn as a histogram.
  field: string;
  histogram: string;
}

// One session as charts: events per second over its window (timeseries with fill, so
// that quiet seconds show as 0), its events grouped by a field with an operation, and
// how a numeric field's values spread.
function chartQuery(id: string, p: Picked) {
  const where = p.kind ? `where: [{field: "kind", value: ${JSON.stringify(p.kind)}}]` : '';
  const field = p.op === 'COUNT' || !p.field ? '' : `, field: ${JSON.stringify(p.field)}`;
  const histogram = p.histogram
    ? `histogram(field: ${JSON.stringify(p.histogram)} ${where}) { count buckets { low le count } }`
    : '';
  return `{ session(id: ${JSON.stringify(id)}) { tracker status
    kinds: aggregate(groupBy: ["kind"]) { keys count }
    timeseries(bucketSecs: 1, fill: true ${where}) { start count }
    aggregate(groupBy: [${JSON.stringify(p.groupBy)}], op: ${p.op}${field}, top: 10 ${where}) { keys value count }
    ${histogram} }
    trackers { name stackMeasure fields { name type description measure total format } } }`;
}

const EVENTS_PAGE = `query($id: ID!, $after: String) { session(id: $id) {
  events(first: 1000, after: $after) { edges { node { ts kind pid ppid comm container { id name image } data } }
    pageInfo { hasNextPage endCursor } } } }`;
// The most events one JSON Lines export takes.
const EXPORT_MAX = 10000;

function csvCell(text: string) {
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// The session's stacks as the server draws them; fetched with the token, shown as an image.
function FlameGraph({ load, id }: { load: Load; id: string }) {
  const [url, setUrl] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let made: string | null = null;
    load
      .get(`/sessions/${encodeURIComponent(id)}/flamegraph.svg`)
      .then(async (response) => {
        if (!response.ok) throw new Error(`HTTP ${response.status}: ${(await response.text()).trim()}`);
        made = URL.createObjectURL(await response.blob());
        setUrl(made);
      })
      .catch((err: Error) => setError(String(err.message ?? err)));
    return () => {
      if (made) URL.revokeObjectURL(made);
    };
  }, [load, id]);
  if (error) return <div className="eunomia-catalog-error">{error}</div>;
  return url ? <img className="eunomia-flame" src={url} alt="flame graph" /> : <div>Drawing...</div>;
}

function LineChart({ buckets }: { buckets: Bucket[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const xs = buckets.map((b) => Date.parse(b.start) / 1000);
    const ys = buckets.map((b) => b.count);
    if (!plot.current) {
      plot.current = new uPlot(
        {
          width: Math.max(240, box.current!.clientWidth),
          height: 160,
          series: [{}, { label: 'events/s', stroke: 'steelblue', fill: 'rgba(70,130,180,0.15)' }],
          axes: [{ label: 'time' }, { label: 'events/s', size: 70 }],
          legend: { show: false },
        },
        [xs, ys],
        box.current!,
      );
    } else {
      plot.current.setData([xs, ys]);
    }
  }, [buckets]);
  useEffect(() => () => plot.current?.destroy(), []);
  return <div className="eunomia-line" ref={box} data-buckets={buckets.length} />;
}

// Horizontal bars, one per row, scaled to the largest; values shown in `format`.
function Bars({
  rows,
  className,
  format,
}: {
  rows: { key: string; value: number }[];
  className: string;
  format?: Format;
}) {
  const most = Math.max(1, ...rows.map((r) => r.value));
  if (rows.length === 0) return <p className={className}>No events yet.</p>;
  return (
    <table className={`eunomia-bars ${className}`}>
      <tbody>
        {rows.map((r) => (
          <tr key={r.key} data-key={r.key} data-value={r.value}>
            <td className="eunomia-bar-key" title={r.key}>
              {r.key}
            </td>
            <td className="eunomia-bar-cell">
              <div className="eunomia-bar-fill" style={{ width: `${(100 * Math.max(0, r.value)) / most}%` }} />
            </td>
            <td className="eunomia-bar-value">{formatValue(r.value, format)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// A histogram's buckets as bars labelled with their range in the field's format, as
// bpftrace's hist() prints them.
function histogramRows(row: HistogramRow | undefined, format?: Format) {
  return (row?.buckets ?? []).map((b) => ({
    key: b.low === null ? '< 0' : `${formatValue(b.low, format)} .. ${formatValue(b.le, format)}`,
    value: b.count,
  }));
}

function Select({
  name,
  value,
  choices,
  onChange,
}: {
  name: string;
  value: string;
  choices: readonly string[];
  onChange: (value: string) => void;
}) {
  return (
    <select name={name} value={value} onChange={(event) => onChange(event.target.value)}>
      {choices.map((c) => (
        <option key={c} value={c}>
          {c || 'none'}
        </option>
      ))}
    </select>
  );
}

export function SessionChart({ load, id, onClose }: { load: Load; id: string; onClose: () => void }) {
  const [picked, setPicked] = useState<Picked>({ kind: '', groupBy: 'comm', op: 'COUNT', field: '', histogram: '' });
  // The histogram field is chosen for the user once the tracker's fields are known.
  const [chosen, setChosen] = useState(false);
  const [live, setLive] = useState(false);
  const polled = usePolled<ChartData>(load, chartQuery(id, picked));
  const tracker = polled.data?.trackers.find((t) => t.name === polled.data?.session.tracker);
  const numeric = (tracker?.fields ?? []).filter((f) => f.measure && f.type !== 'str');
  const measures = numeric.map((f) => f.name);
  // Histograms of interval totals are refused: only per-event values spread.
  const spreads = numeric.filter((f) => !f.total).map((f) => f.name);
  useEffect(() => {
    if (!chosen && tracker) {
      setChosen(true);
      setPicked((p) => ({ ...p, field: measures[0] ?? '', histogram: spreads[0] ?? '' }));
    }
  }, [chosen, tracker, measures, spreads]);
  if (!polled.data) return <div className="eunomia-chart">{polled.error ?? 'Loading...'}</div>;
  const fieldOf = (name: string): Field | undefined => tracker?.fields.find((f) => f.name === name);
  const { session } = polled.data;
  const fields = tracker?.fields ?? [];
  const pick = (key: keyof Picked) => (value: string) => setPicked({ ...picked, [key]: value });
  const bars = session.aggregate.map((r) => ({ key: r.keys[0], value: picked.op === 'COUNT' ? r.count : r.value }));
  const measure = picked.op === 'COUNT' ? 'count' : `${picked.op.toLowerCase()}_${picked.field}`;

  const exportCsv = () => {
    const lines = [`${picked.groupBy},${measure}`, ...bars.map((r) => `${csvCell(r.key)},${r.value}`)];
    saveFile(`${id}-${picked.groupBy}.csv`, `${lines.join('\n')}\n`, 'text/csv');
  };
  const exportEvents = async () => {
    const lines: string[] = [];
    let after: string | null = null;
    while (lines.length < EXPORT_MAX) {
      type Page = {
        session: {
          events: { edges: { node: unknown }[]; pageInfo: { hasNextPage: boolean; endCursor: string } };
        };
      };
      const body: { data?: Page; errors?: { message: string }[] } = await load<Page>(EVENTS_PAGE, { id, after });
      if (body.errors || !body.data) {
        polled.setError(body.errors?.[0].message ?? 'no data');
        return;
      }
      const { edges, pageInfo } = body.data.session.events;
      lines.push(...edges.map((e) => JSON.stringify(e.node)));
      if (!pageInfo.hasNextPage) break;
      after = pageInfo.endCursor;
    }
    saveFile(`${id}.jsonl`, lines.length ? `${lines.slice(0, EXPORT_MAX).join('\n')}\n` : '', 'application/x-ndjson');
  };
  const exportFolded = async () => {
    const body = await load<{ session: { foldedStacks: string } }>(
      'query($id: ID!) { session(id: $id) { foldedStacks } }',
      { id },
    );
    if (body.errors || !body.data) polled.setError(body.errors?.[0].message ?? 'no data');
    else saveFile(`${id}.folded`, body.data.session.foldedStacks, 'text/plain');
  };
  const groupChoices = ['kind', 'comm', 'pid', 'container', ...fields.map((f) => f.name)].filter(
    (name, at, all) => all.indexOf(name) === at,
  );
  return (
    <div className="eunomia-chart" data-chart={id}>
      <div className="eunomia-chart-head">
        <strong>
          {session.tracker} session {id.slice(0, 8)}
        </strong>{' '}
        <span className="eunomia-type">{session.status}</span>
        <button type="button" className="eunomia-close" data-action="close" title="close" onClick={onClose}>
          ×
        </button>
      </div>
      {polled.error && <div className="eunomia-catalog-error">{polled.error}</div>}
      <div className="eunomia-kinds">
        {session.kinds.map((k) => (
          <button
            key={k.keys[0]}
            type="button"
            className={`eunomia-kind${picked.kind === k.keys[0] ? ' picked' : ''}`}
            data-kind={k.keys[0]}
            data-count={k.count}
            title="show only these events (again: all)"
            onClick={() => setPicked({ ...picked, kind: picked.kind === k.keys[0] ? '' : k.keys[0] })}
          >
            {k.keys[0]} {k.count}
          </button>
        ))}
      </div>
      <LineChart buckets={session.timeseries} />
      <div className="eunomia-picker">
        <Select name="op" value={picked.op} choices={OPS} onChange={pick('op')} />
        {picked.op !== 'COUNT' && <Select name="field" value={picked.field} choices={measures} onChange={pick('field')} />}
        {' by '}
        <Select name="groupBy" value={picked.groupBy} choices={groupChoices} onChange={pick('groupBy')} />
      </div>
      <Bars rows={bars} className="eunomia-aggregate" format={picked.op === 'COUNT' ? undefined : fieldOf(picked.field)?.format} />
      {spreads.length > 0 && (
        <div className="eunomia-histogram" data-field={picked.histogram}>
          <label>
            spread of <Select name="histogram" value={picked.histogram} choices={['', ...spreads]} onChange={pick('histogram')} />{' '}
            <span className="eunomia-type">{fieldOf(picked.histogram)?.description} (events per range)</span>
          </label>
          {picked.histogram && (
            <Bars
              rows={histogramRows(session.histogram?.[0], fieldOf(picked.histogram)?.format)}
              className="eunomia-histogram-bars"
            />
          )}
        </div>
      )}
      <div className="eunomia-exports">
        export:{' '}
        <button type="button" className="eunomia-example" data-export="csv" onClick={exportCsv}>
          CSV
        </button>
        <button
          type="button"
          className="eunomia-example"
          data-export="jsonl"
          title={`the first ${EXPORT_MAX} events`}
          onClick={exportEvents}
        >
          JSON Lines
        </button>
        {tracker?.stackMeasure && (
          <button type="button" className="eunomia-example" data-export="folded" onClick={exportFolded}>
            folded stacks
          </button>
        )}
      </div>
      {tracker?.stackMeasure && <FlameGraph load={load} id={id} />}
      {session.status === 'RUNNING' && (
        <Action action="live" onClick={() => setLive(!live)}>
          {live ? 'stop live events' : 'live events'}
        </Action>
      )}
      {live && <LiveEvents load={load} id={id} />}
    </div>
  );
}
