/**
 * One milestone: status, risk and due date can be changed in place. A new due
 * date asks for an optional reason before it is saved (slips are tracked).
 */
import {
  Button,
  DateInput,
  Flex,
  Input,
  Select,
  StatusTag,
  Tag,
  Text,
  Tile,
} from '@hubspot/ui-extensions';
import { useState } from 'react';

import {
  OWNER_SIDE_LABEL,
  RISK_OPTIONS,
  STATUS_OPTIONS,
  fromBaseDate,
  toBaseDate,
  today,
} from '../labels';
import type { Milestone, MilestoneChanges, MilestoneStatus, Risk } from '../types';

interface Props {
  milestone: Milestone;
  busy: boolean;
  first: boolean;
  last: boolean;
  onChange: (milestone: Milestone, changes: MilestoneChanges) => Promise<boolean>;
  onMove: (delta: -1 | 1) => void;
}

/** `undefined` = no due-date change in progress; `null` = clearing the date. */
type PendingDue = string | null | undefined;

export function MilestoneTile({ milestone: m, busy, first, last, onChange, onMove }: Props) {
  const [pendingDue, setPendingDue] = useState<PendingDue>(undefined);
  const [reason, setReason] = useState('');
  const overdue = m.status !== 'done' && m.due_date !== null && m.due_date < today();
  const owners = m.owners.length ? m.owners.map((o) => o.name || o.email).join(', ') : 'unassigned';

  const cancelDue = () => {
    setPendingDue(undefined);
    setReason('');
  };
  const saveDue = async () => {
    const changes: MilestoneChanges = { due_date: pendingDue ?? null };
    if (reason.trim()) changes.reason = reason.trim();
    await onChange(m, changes);
    cancelDue();
  };

  return (
    <Tile compact testId={`milestone-${m.id}`}>
      <Flex direction="column" gap="xs">
        <Flex gap="sm" align="center" wrap>
          <Text format={{ fontWeight: 'demibold' }} testId={`milestone-title-${m.id}`}>
            {m.title}
          </Text>
          {m.internal && <Tag variant="info">Internal</Tag>}
          {overdue && (
            <StatusTag variant="danger" testId={`overdue-${m.id}`}>
              Overdue
            </StatusTag>
          )}
        </Flex>
        {m.description && <Text variant="microcopy">{m.description}</Text>}
        {m.status !== 'done' && m.waiting_on && m.waiting_on.length > 0 && (
          <Text variant="microcopy" testId={`waiting-${m.id}`}>
            {`Waiting on ${m.waiting_on.join(', ')}`}
          </Text>
        )}
        <Text variant="microcopy" testId={`owner-${m.id}`}>
          {`${OWNER_SIDE_LABEL[m.owner_side]}: ${owners}`}
        </Text>
        <Flex gap="sm" align="end" wrap>
          <Select
            testId={`status-${m.id}`}
            label="Status"
            name={`status-${m.id}`}
            value={m.status}
            readOnly={busy}
            options={STATUS_OPTIONS}
            onChange={(value) => {
              if (value !== m.status) void onChange(m, { status: value as MilestoneStatus });
            }}
          />
          <Select
            testId={`risk-${m.id}`}
            label="Risk"
            name={`risk-${m.id}`}
            value={m.risk}
            readOnly={busy}
            options={RISK_OPTIONS}
            onChange={(value) => {
              if (value !== m.risk) void onChange(m, { risk: value as Risk });
            }}
          />
          <DateInput
            testId={`due-${m.id}`}
            label="Due date"
            name={`due-${m.id}`}
            format="YYYY-MM-DD"
            readOnly={busy}
            value={toBaseDate(pendingDue === undefined ? m.due_date : pendingDue)}
            onChange={(value) => {
              const next = value ? fromBaseDate(value) : null;
              setPendingDue(next === m.due_date ? undefined : next);
            }}
          />
          <Button
            testId={`up-${m.id}`}
            size="xs"
            variant="transparent"
            disabled={busy || first}
            onClick={() => onMove(-1)}
          >
            Move up
          </Button>
          <Button
            testId={`down-${m.id}`}
            size="xs"
            variant="transparent"
            disabled={busy || last}
            onClick={() => onMove(1)}
          >
            Move down
          </Button>
        </Flex>
        {pendingDue !== undefined && (
          <Flex gap="sm" align="end" wrap testId={`due-change-${m.id}`}>
            <Input
              testId={`reason-${m.id}`}
              name={`reason-${m.id}`}
              label={`Why does the date change${m.due_date ? ` from ${m.due_date}` : ''}? (optional)`}
              value={reason}
              onChange={setReason}
            />
            <Button
              testId={`save-due-${m.id}`}
              variant="primary"
              disabled={busy}
              onClick={() => void saveDue()}
            >
              Save date
            </Button>
            <Button testId={`cancel-due-${m.id}`} onClick={cancelDue}>
              Cancel
            </Button>
          </Flex>
        )}
      </Flex>
    </Tile>
  );
}
