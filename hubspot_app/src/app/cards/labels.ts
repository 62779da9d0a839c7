/** Display labels and small date helpers shared by the card components. */
import type { BaseDate } from '@hubspot/ui-extensions';

import type { Health, MilestoneStatus, OwnerSide, Risk } from './types';

export const STATUS_OPTIONS: { label: string; value: MilestoneStatus }[] = [
  { label: 'Not started', value: 'not_started' },
  { label: 'In progress', value: 'in_progress' },
  { label: 'Done', value: 'done' },
];

export const RISK_OPTIONS: { label: string; value: Risk }[] = [
  { label: 'On track', value: 'on_track' },
  { label: 'At risk', value: 'at_risk' },
  { label: 'Off track', value: 'off_track' },
];

export const RISK_LABEL: Record<Risk, string> = {
  on_track: 'On track',
  at_risk: 'At risk',
  off_track: 'Off track',
};

export const RISK_VARIANT: Record<Risk, 'success' | 'warning' | 'danger'> = {
  on_track: 'success',
  at_risk: 'warning',
  off_track: 'danger',
};

export const HEALTH_LABEL: Record<Health, string> = {
  on_track: 'On track',
  at_risk: 'At risk',
  stalled: 'Stalled',
};

export const HEALTH_VARIANT: Record<Health, 'success' | 'warning' | 'danger'> = {
  on_track: 'success',
  at_risk: 'warning',
  stalled: 'danger',
};

export const OWNER_SIDE_LABEL: Record<OwnerSide, string> = {
  buyer: 'Buyer',
  seller: 'Seller',
  both: 'Both',
};

/** "2026-12-01" -> {year: 2026, month: 11, date: 1} (DateInput months start at 0). */
export function toBaseDate(iso: string | null): BaseDate | undefined {
  if (!iso) return undefined;
  const [year, month, date] = iso.split('-').map(Number);
  return { year, month: month - 1, date };
}

/** {year: 2026, month: 11, date: 1} -> "2026-12-01". */
export function fromBaseDate(value: BaseDate): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${value.year}-${pad(value.month + 1)}-${pad(value.date)}`;
}

/** Today's date as YYYY-MM-DD in the browser's time zone. */
export function today(): string {
  const now = new Date();
  return fromBaseDate({ year: now.getFullYear(), month: now.getMonth(), date: now.getDate() });
}
