import { useEffect, useRef, useState } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { LiveEvents } from './LiveEvents';
import { saveFile, usePolled } from './polled';

// One session as charts: events per second over its window (timeseries with fill, so
// that quiet seconds show as 0), and its events counted by a field the user picks.
function chartQuery(id, groupBy) {
  return `{ session(id: ${JSON.stringify(id)}) { tracker status
    timeseries(bucketSecs: 1, fill: true) { start count }
    aggregate(groupBy: [${JSON.stringify(groupBy)}], top: 10) { keys count } }
    trackers { name stackMeasure fields { name } } }`;
}

const EVENTS_PAGE = `query($id: ID!, $after: String) { session(id: $id) {
  events(first: 1000, after: $after) { edges { node { ts kind pid ppid comm container { id name image } data } }
    pageInfo { hasNextPage endCursor } } } }`;
// The most events one JSON Lines export takes.
const EXPORT_MAX = 10000;

function csvCell(text) {
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// The session's stacks as the server draws them; fetched with the token, shown as an image.
function FlameGraph({ load, id }) {
  const [url, setUrl] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let made = null;
    load
      .get(`/sessions/${encodeURIComponent(id)}/flamegraph.svg`)
      .then(async (response) => {
        if (!response.ok) throw new Error(`HTTP ${response.status}: ${(await response.text()).trim()}`);
        made = URL.createObjectURL(await response.blob());
        setUrl(made);
      })
      .catch((err) => setError(String(err.message ?? err)));
    return () => made && URL.revokeObjectURL(made);
  }, [load, id]);
  if (error) return <div className="eunomia-catalog-error">{error}</div>;
  return url ? <img className="eunomia-flame" src={url} alt="flame graph" /> : <div>Drawing...</div>;
}

function LineChart({ buckets }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const xs = buckets.map((b) => Date.parse(b.start) / 1000);
    const ys = buckets.map((b) => b.count);
    if (!plot.current) {
      plot.current = new uPlot(
        {
          width: Math.max(240, box.current.clientWidth),
          height: 160,
          series: [{}, { label: 'events/s', stroke: 'steelblue', fill: 'rgba(70,130,180,0.15)' }],
          legend: { show: false },
        },
        [xs, ys],
        box.current,
      );
    } else {
      plot.current.setData([xs, ys]);
    }
  }, [buckets]);
  useEffect(() => () => plot.current?.destroy(), []);
  return <div className="eunomia-line" ref={box} data-buckets={buckets.length} />;
}

function Bars({ rows }) {
  const most = Math.max(1, ...rows.map((r) => r.count));
  if (rows.length === 0) return <p className="eunomia-bars">No events yet.</p>;
  return (
    <table className="eunomia-bars">
      <tbody>
        {rows.map((r) => (
          <tr key={r.keys.join('\u0000')} data-key={r.keys[0]}>
            <td className="eunomia-bar-key">{r.keys[0]}</td>
            <td className="eunomia-bar-cell">
              <div className="eunomia-bar" style={{ width: `${(100 * r.count) / most}%` }} />
            </td>
            <td>{r.count}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function SessionChart({ load, id }) {
  const [groupBy, setGroupBy] = useState('comm');
  const [live, setLive] = useState(false);
  const polled = usePolled(load, chartQuery(id, groupBy));
  if (!polled.data) return <div className="eunomia-chart">{polled.error ?? 'Loading...'}</div>;
  const { session, trackers } = polled.data;
  const tracker = trackers.find((t) => t.name === session.tracker);
  const fields = tracker?.fields ?? [];

  const exportCsv = () => {
    const lines = [`${groupBy},count`, ...session.aggregate.map((r) => `${csvCell(r.keys[0])},${r.count}`)];
    saveFile(`${id}-${groupBy}.csv`, `${lines.join('\n')}\n`, 'text/csv');
  };
  const exportEvents = async () => {
    const lines = [];
    let after = null;
    while (lines.length < EXPORT_MAX) {
      const body = await load(EVENTS_PAGE, { id, after });
      if (body.errors) {
        polled.setError(body.errors[0].message);
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
    const body = await load('query($id: ID!) { session(id: $id) { foldedStacks } }', { id });
    if (body.errors) polled.setError(body.errors[0].message);
    else saveFile(`${id}.folded`, body.data.session.foldedStacks, 'text/plain');
  };
  return (
    <div className="eunomia-chart" data-chart={id}>
      {polled.error && <div className="eunomia-catalog-error">{polled.error}</div>}
      <LineChart buckets={session.timeseries} />
      <label>
        events by{' '}
        <select value={groupBy} onChange={(event) => setGroupBy(event.target.value)}>
          {['kind', 'comm', 'pid', 'container', ...fields.map((f) => f.name)]
            .filter((name, at, all) => all.indexOf(name) === at)
            .map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
        </select>
      </label>
      <Bars rows={session.aggregate} />
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
        <button type="button" className="eunomia-example" data-action="live" onClick={() => setLive(!live)}>
          {live ? 'stop live events' : 'live events'}
        </button>
      )}
      {live && <LiveEvents load={load} id={id} />}
    </div>
  );
}
