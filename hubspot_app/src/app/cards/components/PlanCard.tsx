/**
 * The app card on a deal: not configured, loading, error, empty (create) and plan states.
 * The backend origin comes from the config profile's variables (context.variables).
 */
import {
  Alert,
  Button,
  ErrorState,
  Flex,
  LoadingSpinner,
  Text,
  useExtensionActions,
  useExtensionContext,
} from '@hubspot/ui-extensions';
import { useMemo } from 'react';

import { backendOrigin, EDITOR_MODAL } from '../config';
import { problemText } from '../problem';
import type { Caller, EditorPage } from '../types';
import { usePlan } from '../usePlan';
import { BuyerLinkPanel } from './BuyerLinkPanel';
import { EmptyPlan } from './EmptyPlan';
import { PlanSummary } from './PlanSummary';
import { ReconnectBanner } from './ReconnectBanner';
import { StageSection } from './StageSection';
import { SyncPanel } from './SyncPanel';
import { TruncatedNotice } from './TruncatedNotice';

export function PlanCard() {
  const context = useExtensionContext<'crm.record.tab'>();
  const origin = backendOrigin(context.variables);
  if (!origin.ok) {
    return (
      <ErrorState testId="not-configured" title="MutualPlan is not configured">
        <Text testId="not-configured-detail">{origin.reason}</Text>
      </ErrorState>
    );
  }
  return <ConfiguredCard origin={origin.origin} />;
}

function ConfiguredCard({ origin }: { origin: string }) {
  const context = useExtensionContext<'crm.record.tab'>();
  const actions = useExtensionActions<'crm.record.tab'>();
  const caller = useMemo<Caller>(
    () => ({
      origin,
      portalId: context.portal.id,
      userId: context.user.id,
      userEmail: context.user.email,
    }),
    [origin, context.portal.id, context.user.id, context.user.email],
  );
  const state = usePlan(caller, String(context.crm.objectId));
  const { load, notice, busy } = state;

  if (load.status === 'loading') {
    return (
      <LoadingSpinner testId="loading" label="Loading the mutual action plan…" layout="centered" />
    );
  }

  if (load.status === 'error') {
    const { problem } = load.error;
    if (load.error.status === 403 && problem.type.endsWith('/not-installed')) {
      return (
        <ErrorState testId="not-installed" title="MutualPlan is not connected to this HubSpot account">
          <Text testId="load-error-detail">{problemText(problem)}</Text>
          {problem.reconnect_url && (
            <Button
              testId="install-button"
              variant="primary"
              href={{ url: problem.reconnect_url, external: true }}
            >
              Connect MutualPlan
            </Button>
          )}
        </ErrorState>
      );
    }
    return (
      <ErrorState testId="load-error" title="The mutual action plan could not be loaded">
        <Text testId="load-error-detail">{problemText(problem)}</Text>
        <Button testId="retry" onClick={() => void state.reload()}>
          Try again
        </Button>
      </ErrorState>
    );
  }

  const { envelope } = load;
  const plan = envelope.plan;

  const openEditor = async (page?: EditorPage) => {
    const url = await state.editorLink(page);
    if (!url) return;
    actions.openIframeModal(
      { uri: url, title: plan?.title ?? 'Mutual action plan', ...EDITOR_MODAL },
      () => void state.reload(),
    );
  };

  const copyLink = (url: string) =>
    actions.copyTextToClipboard(url).then(
      () => state.announce({ variant: 'success', title: 'Buyer link copied' }),
      () =>
        state.announce({
          variant: 'danger',
          title: 'Could not copy the link',
          message: 'Select the link and copy it by hand.',
        }),
    );

  return (
    <Flex direction="column" gap="md">
      {notice && (
        <Alert testId="notice" title={notice.title} variant={notice.variant}>
          {notice.message}
        </Alert>
      )}
      {envelope.connection === 'needs_reconnect' && (
        <ReconnectBanner url={envelope.reconnect_url} />
      )}
      {plan ? (
        <>
          <PlanSummary
            plan={plan}
            busy={busy}
            onOpenEditor={() => void openEditor()}
            onOpenContent={() => void openEditor('content')}
          />
          <TruncatedNotice plan={plan} busy={busy} onOpenEditor={() => void openEditor()} />
          <BuyerLinkPanel
            link={envelope.buyer_link}
            busy={busy}
            onCopy={(url) => void copyLink(url)}
            onLink={(rotate) => void state.buyerLink(rotate)}
          />
          {[...plan.stages]
            .sort((a, b) => a.position - b.position)
            .map((stage) => (
              <StageSection
                key={stage.id}
                stage={stage}
                busy={busy}
                trimmed={Boolean(plan.milestones_truncated)}
                onChange={state.changeMilestone}
                onMove={(milestoneId, delta) => void state.move(stage, milestoneId, delta)}
              />
            ))}
          <SyncPanel mode={envelope.mode} sync={envelope.sync} />
        </>
      ) : (
        <EmptyPlan
          templates={envelope.templates}
          busy={busy}
          onCreate={(template, title, dealName) => void state.create(template, title, dealName)}
        />
      )}
    </Flex>
  );
}
