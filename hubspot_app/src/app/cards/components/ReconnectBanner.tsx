import { Alert, Button, Text } from '@hubspot/ui-extensions';

/** Shown when the backend cannot use this portal's tokens any more. */
export function ReconnectBanner({ url }: { url: string | null }) {
  return (
    <Alert testId="reconnect" title="Reconnect MutualPlan to HubSpot" variant="warning">
      <Text>
        MutualPlan lost access to this HubSpot account, so changes are not copied to the deal.
        The plan itself is safe. An admin needs to reconnect the app.
      </Text>
      {url && (
        <Button testId="reconnect-button" variant="primary" href={{ url, external: true }}>
          Reconnect
        </Button>
      )}
    </Alert>
  );
}
