/** Plan title, progress bar, overall risk, next milestone and the editor button. */
import {
  Button,
  DescriptionList,
  DescriptionListItem,
  Flex,
  Heading,
  ProgressBar,
  StatusTag,
  Text,
} from '@hubspot/ui-extensions';

import { HEALTH_LABEL, HEALTH_VARIANT, RISK_LABEL, RISK_VARIANT } from '../labels';
import type { ContentSummary, Plan } from '../types';
import { CoverageSection } from './Coverage';

interface Props {
  plan: Plan;
  busy: boolean;
  onOpenEditor: () => void;
  /** Opens the editor's content page (videos, decks, notes, files). */
  onOpenContent?: () => void;
}

/** "3 blocks, 2 shared with the buyer" (the card's line about the plan's content). */
export function contentText(content: ContentSummary): string {
  if (!content.count) return 'No content yet';
  const blocks = `${content.count} block${content.count === 1 ? '' : 's'}`;
  return content.shared === content.count
    ? `${blocks}, all shared with the buyer`
    : `${blocks}, ${content.shared} shared with the buyer`;
}

export function PlanSummary({ plan, busy, onOpenEditor, onOpenContent }: Props) {
  const { done, total, percent } = plan.progress;
  const next = plan.next_milestone;
  return (
    <Flex direction="column" gap="sm">
      <Flex justify="between" align="center">
        <Heading testId="plan-title">{plan.title}</Heading>
        <Button testId="open-editor" disabled={busy} onClick={onOpenEditor}>
          Open full editor
        </Button>
      </Flex>
      <ProgressBar
        testId="progress"
        title="Progress"
        value={percent}
        maxValue={100}
        showPercentage
        valueDescription={`${done} of ${total} milestones done`}
        variant={RISK_VARIANT[plan.risk]}
      />
      <DescriptionList direction="row">
        <DescriptionListItem label="Overall risk">
          <StatusTag testId="plan-risk" variant={RISK_VARIANT[plan.risk]}>
            {RISK_LABEL[plan.risk]}
          </StatusTag>
        </DescriptionListItem>
        {plan.health ? (
          <DescriptionListItem label="Health">
            <StatusTag testId="plan-health" variant={HEALTH_VARIANT[plan.health]}>
              {HEALTH_LABEL[plan.health]}
            </StatusTag>
          </DescriptionListItem>
        ) : null}
        {plan.win_probability != null ? (
          <DescriptionListItem label="Win probability">
            <Text testId="win-probability">{`${plan.win_probability}%`}</Text>
          </DescriptionListItem>
        ) : null}
        <DescriptionListItem label="Next milestone">
          <Text testId="next-milestone">
            {next ? `${next.title}${next.due_date ? ` (due ${next.due_date})` : ''}` : 'None'}
          </Text>
        </DescriptionListItem>
        <DescriptionListItem label="Overdue">
          <Text testId="overdue">{String(plan.overdue_count)}</Text>
        </DescriptionListItem>
        <DescriptionListItem label="Slipped">
          <Text testId="slips">
            {plan.slip_count
              ? `${plan.slip_count} date changes, ${plan.slip_days} days`
              : 'No slips'}
          </Text>
        </DescriptionListItem>
        {plan.content ? (
          <DescriptionListItem label="Content">
            <Text testId="content-count">{contentText(plan.content)}</Text>
          </DescriptionListItem>
        ) : null}
      </DescriptionList>
      {plan.content && onOpenContent ? (
        <Flex>
          <Button testId="open-content" disabled={busy} onClick={onOpenContent}>
            {plan.content.count ? 'Open content' : 'Add content'}
          </Button>
        </Flex>
      ) : null}
      {plan.coverage ? <CoverageSection coverage={plan.coverage} /> : null}
    </Flex>
  );
}
