/** The developer project's config files agree with each other and with the card code. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../../..');
const read = (path: string) => JSON.parse(readFileSync(join(root, path), 'utf8'));

describe('developer project', () => {
  const project = read('hsproject.json');
  const app = read('src/app/app-hsmeta.json');
  const card = read('src/app/cards/MapCard-hsmeta.json');
  const webhooks = read('src/app/webhooks/webhooks-hsmeta.json');

  it('pins a platform version', () => {
    expect(project).toEqual({ name: 'mutualplan', srcDir: 'src', platformVersion: '2026.03' });
  });

  it('is an OAuth app whose custom-object scopes are optional', () => {
    expect(app.type).toBe('app');
    expect(app.config.auth.type).toBe('oauth');
    expect(app.config.auth.redirectUrls).toContain('http://localhost:5000/oauth/hubspot/callback');
    expect(app.config.auth.requiredScopes).toEqual(
      expect.arrayContaining(['oauth', 'crm.objects.deals.read', 'crm.objects.deals.write']),
    );
    for (const scope of app.config.auth.optionalScopes) expect(scope).toMatch(/\.custom\./);
    for (const url of app.config.permittedUrls.fetch) expect(url).toMatch(/^https:\/\/[^/]+$/);
  });

  it('puts the card on the deal record tab, with an entrypoint that exists', () => {
    expect(card.type).toBe('card');
    expect(card.config.location).toBe('crm.record.tab');
    expect(card.config.objectTypes).toEqual(['deals']);
    expect(existsSync(join(root, 'src', card.config.entrypoint))).toBe(true);
  });

  it('subscribes to deal stage, close date and deletion', () => {
    const subs = webhooks.config.subscriptions.legacyCrmObjects;
    expect(subs.map((s: { subscriptionType: string; propertyName?: string }) =>
      [s.subscriptionType, s.propertyName ?? null])).toEqual([
      ['deal.propertyChange', 'dealstage'],
      ['deal.propertyChange', 'closedate'],
      ['deal.deletion', null],
    ]);
    expect(subs.every((s: { active: boolean }) => s.active)).toBe(true);
  });

  it('uses unique uids', () => {
    const uids = [app.uid, card.uid, webhooks.uid];
    expect(new Set(uids).size).toBe(uids.length);
  });
});
