import { useEffect, useRef, useState } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { usePolled } from './polled';

// One session as charts: events per second over its window (timeseries with fill, so
// that quiet seconds show as 0), and its events counted by a field the user picks.
function chartQuery(id, groupBy) {
  return `{ session(id: ${JSON.stringify(id)}) { tracker status
    timeseries(bucketSecs: 1, fill: true) { start count }
    aggregate(groupBy: [${JSON.stringify(groupBy)}], top: 10) { keys count } }
    trackers { name fields { name } } }`;
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
  const polled = usePolled(load, chartQuery(id, groupBy));
  if (!polled.data) return <div className="eunomia-chart">{polled.error ?? 'Loading...'}</div>;
  const { session, trackers } = polled.data;
  const fields = trackers.find((t) => t.name === session.tracker)?.fields ?? [];
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
    </div>
  );
}
