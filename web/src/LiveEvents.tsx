import { useEffect, useRef, useState } from 'react';
import { type Load, useSubscription } from './polled';

interface LiveEvent {
  seq: number;
  ts: string;
  kind: string;
  pid: number;
  comm: string;
  data: unknown;
}

// Batches: at most ten messages a second however fast events come, so that the page
// parses a few large messages instead of thousands of small ones.
const SUBSCRIPTION = `subscription($id: ID!) {
  sessionEventBatches(id: $id, intervalMs: 100, maxEvents: 5000) { events { seq ts kind pid comm data } }
}`;
// Events kept for the table; past it the oldest go (the counters say so).
const KEEP = 5000;
// The table is drawn again this often, whatever the rate events arrive at.
const DRAW_MS = 200;
const ROW_PX = 20;
const ROWS_SHOWN = 15;

interface Counts {
  received: number;
  // Events the server's live sample (or a slow reader) left out: gaps in `seq`.
  skipped: number;
  lastSeq: number | null;
  // Events received in the last second, and when that second began.
  rate: number;
  second: number;
  inSecond: number;
}

// A session's events as they happen, newest first. Every event that arrives is counted
// and kept up to KEEP; the table draws only the rows in view, five times a second, so a
// stream of thousands of events a second leaves the page responsive. Gaps in `seq` are
// events the server did not send: its live sample (at most 10,000 a second for all
// viewers) or this reader falling behind; the header says it is sampling.
export function LiveEvents({ load, id }: { load: Load; id: string }) {
  const kept = useRef<LiveEvent[]>([]);
  const counts = useRef<Counts>({ received: 0, skipped: 0, lastSeq: null, rate: 0, second: 0, inSecond: 0 });
  const [, setDrawn] = useState(0);
  const [top, setTop] = useState(0);

  const error = useSubscription<{ sessionEventBatches: { events: LiveEvent[] } }>(
    load,
    SUBSCRIPTION,
    { id },
    ({ sessionEventBatches: { events } }) => {
      const c = counts.current;
      for (const event of events) {
        if (c.lastSeq !== null && event.seq > c.lastSeq + 1) c.skipped += event.seq - c.lastSeq - 1;
        c.lastSeq = event.seq;
      }
      c.received += events.length;
      const now = Math.floor(Date.now() / 1000);
      if (now !== c.second) {
        c.rate = now === c.second + 1 ? c.inSecond : 0;
        c.second = now;
        c.inSecond = 0;
      }
      c.inSecond += events.length;
      kept.current.push(...events);
      if (kept.current.length > 2 * KEEP) kept.current = kept.current.slice(-KEEP);
    },
  );
  useEffect(() => {
    const timer = setInterval(() => setDrawn((n) => n + 1), DRAW_MS);
    return () => clearInterval(timer);
  }, []);

  const events = kept.current.slice(-KEEP).reverse();
  const { received, skipped, rate } = counts.current;
  const first = Math.floor(top / ROW_PX);
  const rows = events.slice(first, first + ROWS_SHOWN + 1);
  return (
    <div className="eunomia-live" data-received={received} data-skipped={skipped}>
      <div className="eunomia-type">
        {received} received ({rate}/s)
        {received > KEEP ? `, showing the newest ${KEEP}` : ''}
        {skipped ? `; sampling: ${skipped} not sent by the server (its live sample, or this reader was too slow)` : ''}
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
