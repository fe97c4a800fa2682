import { useEffect, useRef, useState } from 'react';

const SUBSCRIPTION = `subscription($id: ID!) { sessionEvents(id: $id) { seq ts kind pid comm data } }`;
// Events kept for the table; past it the oldest go (the counters say so).
const KEEP = 5000;
// The table is drawn again this often, whatever the rate events arrive at.
const DRAW_MS = 200;
const ROW_PX = 20;
const ROWS_SHOWN = 15;

// A session's events as they happen, newest first. Every event that arrives is counted
// and kept up to KEEP; the table draws only the rows in view, five times a second, so a
// stream of thousands of events a second leaves the page responsive. Gaps in `seq` are
// events the server could not send this slow a reader (it counts them too).
export function LiveEvents({ load, id }) {
  const kept = useRef([]);
  const counts = useRef({ received: 0, skipped: 0, lastSeq: null });
  const [, setDrawn] = useState(0);
  const [top, setTop] = useState(0);
  const [error, setError] = useState(null);

  useEffect(() => {
    const stop = load.subscribe(
      SUBSCRIPTION,
      { id },
      ({ sessionEvents: event }) => {
        const c = counts.current;
        c.received += 1;
        if (c.lastSeq !== null && event.seq > c.lastSeq + 1) c.skipped += event.seq - c.lastSeq - 1;
        c.lastSeq = event.seq;
        kept.current.push(event);
        if (kept.current.length > 2 * KEEP) kept.current = kept.current.slice(-KEEP);
      },
      setError,
    );
    const timer = setInterval(() => setDrawn((n) => n + 1), DRAW_MS);
    return () => {
      stop();
      clearInterval(timer);
    };
  }, [load, id]);

  const events = kept.current.slice(-KEEP).reverse();
  const { received, skipped } = counts.current;
  const first = Math.floor(top / ROW_PX);
  const rows = events.slice(first, first + ROWS_SHOWN + 1);
  return (
    <div className="eunomia-live" data-received={received}>
      <div className="eunomia-type">
        {received} received
        {received > KEEP ? `, showing the newest ${KEEP}` : ''}
        {skipped ? `, ${skipped} skipped by the server (this reader was too slow)` : ''}
      </div>
      {error && <div className="eunomia-catalog-error">{error}</div>}
      <div
        className="eunomia-live-view"
        style={{ height: ROW_PX * ROWS_SHOWN }}
        onScroll={(event) => setTop(event.currentTarget.scrollTop)}
      >
        <div style={{ height: events.length * ROW_PX, position: 'relative' }}>
          {rows.map((e, at) => (
            <div
              key={e.seq}
              data-seq={e.seq}
              className="eunomia-live-row"
              style={{ top: (first + at) * ROW_PX, height: ROW_PX }}
              title={JSON.stringify(e.data)}
            >
              {e.ts.slice(11, 23)} {e.kind} {e.pid} {e.comm}
            </div>
          ))}
        </div>
      </div>
    </div>
  );
}
