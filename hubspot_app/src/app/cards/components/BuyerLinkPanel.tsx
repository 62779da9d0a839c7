/** The buyer's plan link: create it, copy it, or rotate it (the old link stops working). */
import { Button, Flex, Heading, Link, Text } from '@hubspot/ui-extensions';
import { useState } from 'react';

interface Props {
  link: { url: string } | null;
  busy: boolean;
  onCopy: (url: string) => void;
  onLink: (rotate: boolean) => void;
}

export function BuyerLinkPanel({ link, busy, onCopy, onLink }: Props) {
  const [confirming, setConfirming] = useState(false);

  if (!link) {
    return (
      <Flex direction="column" gap="xs">
        <Heading>Buyer link</Heading>
        <Text>The buyer has no link to this plan yet.</Text>
        <Button testId="create-link" disabled={busy} onClick={() => onLink(false)}>
          Create buyer link
        </Button>
      </Flex>
    );
  }

  return (
    <Flex direction="column" gap="xs">
      <Heading>Buyer link</Heading>
      <Link testId="buyer-link" href={{ url: link.url, external: true }}>
        {link.url}
      </Link>
      {confirming ? (
        <Flex gap="sm" align="center">
          <Text testId="rotate-warning">
            The current link will stop working for everyone who has it.
          </Text>
          <Button
            testId="rotate-confirm"
            variant="destructive"
            disabled={busy}
            onClick={() => {
              setConfirming(false);
              onLink(true);
            }}
          >
            Rotate link
          </Button>
          <Button testId="rotate-cancel" onClick={() => setConfirming(false)}>
            Cancel
          </Button>
        </Flex>
      ) : (
        <Flex gap="sm">
          <Button testId="copy-link" onClick={() => onCopy(link.url)}>
            Copy link
          </Button>
          <Button testId="rotate-link" disabled={busy} onClick={() => setConfirming(true)}>
            Rotate link
          </Button>
        </Flex>
      )}
    </Flex>
  );
}
