// The shapes of what the panels ask the GraphQL API for (the subset each selects).
import type { Format } from './format';

export interface Field {
  name: string;
  type: string;
  description: string;
  measure: boolean;
  // A sum over many calls in one record: AVG, MIN, MAX, percentiles and histograms of it
  // are refused.
  total: boolean;
  format: Format;
}

export interface TrackerOption {
  name: string;
  // boolean, integer, string, enum, or [T] for a list of T.
  type: string;
  values: string[];
  default: unknown;
  description: string;
}

export interface Tracker {
  name: string;
  description: string;
  weight: string | null;
  stackMeasure: string | null;
  fields: Field[];
  options: TrackerOption[];
}

export type Role = 'VIEWER' | 'OPERATOR';

export interface SessionRow {
  id: string;
  tracker: string;
  label: string | null;
  status: string;
  store: string;
  eventCount: number;
  lostCount: number;
  completeness: number;
  endsAt: string;
}

export interface ContainerRef {
  id: string;
  name: string | null;
}
