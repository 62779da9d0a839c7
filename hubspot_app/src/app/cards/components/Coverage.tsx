/**
 * Stakeholder coverage: which buyer-side roles engaged (viewed the buyer page or acted) in the
 * last `days` days, from the backend's card data (webapp/analytics.py coverage), and the alert
 * when the decision maker has not.
 */
import { Alert, Flex, Tag, Text } from '@hubspot/ui-extensions';

import type { Coverage, CoverageRole } from '../types';

function state(r: CoverageRole): { text: string; variant: 'success' | 'warning' | 'default' } {
  if (r.engaged) return { text: 'engaged', variant: 'success' };
  if (r.present) return { text: 'quiet', variant: 'warning' };
  return { text: 'not named', variant: 'default' };
}

export function CoverageSection({ coverage }: { coverage: Coverage }) {
  const dm = coverage.roles.find((r) => r.role === 'decision_maker');
  return (
    <Flex direction="column" gap="xs">
      <Text format={{ fontWeight: 'bold' }}>
        {`Stakeholder coverage (last ${coverage.days} days)`}
      </Text>
      <Flex direction="row" gap="xs" wrap="wrap">
        {coverage.roles.map((r) => {
          const { text, variant } = state(r);
          return (
            <Tag key={r.role} testId={`coverage-${r.role}`} variant={variant}>
              {`${r.label}: ${text}`}
            </Tag>
          );
        })}
      </Flex>
      {coverage.decision_maker_alert ? (
        <Alert testId="decision-maker-alert" title="Decision maker" variant="warning">
          {dm?.present
            ? `The decision maker has not engaged in the last ${coverage.days} days.`
            : 'No decision maker is named on the buyer side.'}
        </Alert>
      ) : null}
    </Flex>
  );
}
