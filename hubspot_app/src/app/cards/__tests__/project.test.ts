/** The developer project's config files agree with each other and with the card code. */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { translate } from '@hubspot/project-parsing-lib/translate';
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

  it('is an OAuth app whose custom-object and timeline scopes are optional', () => {
    expect(app.type).toBe('app');
    expect(app.config.auth.type).toBe('oauth');
    expect(app.config.auth.redirectUrls).toEqual(['${BACKEND_ORIGIN}/oauth/hubspot/callback']);
    expect(app.config.auth.requiredScopes).toEqual(
      expect.arrayContaining(['oauth', 'crm.objects.deals.read', 'crm.objects.deals.write']),
    );
    // custom objects (Enterprise only); buyer activity as timeline events, or notes without them
    for (const scope of app.config.auth.optionalScopes)
      expect(scope).toMatch(/\.custom\.|^timeline$|^crm\.objects\.contacts\.write$/);
    expect(app.config.permittedUrls.fetch).toEqual(['${BACKEND_ORIGIN}']);
    expect(app.config.permittedUrls.iframe).toEqual(['${BACKEND_ORIGIN}']);
    expect(webhooks.config.settings.targetUrl).toBe('${BACKEND_ORIGIN}/webhooks/hubspot');
  });

  it('puts the card on the deal record tab, with an entrypoint that exists', () => {
    expect(card.type).toBe('card');
    expect(card.config.location).toBe('crm.record.tab');
    expect(card.config.objectTypes).toEqual(['deals']);
    expect(existsSync(join(root, 'src', card.config.entrypoint))).toBe(true);
  });

  it('subscribes to deal stage, close date, deletion and restore', () => {
    const subs = webhooks.config.subscriptions.legacyCrmObjects;
    expect(subs.map((s: { subscriptionType: string; propertyName?: string }) =>
      [s.subscriptionType, s.propertyName ?? null])).toEqual([
      ['deal.propertyChange', 'dealstage'],
      ['deal.propertyChange', 'closedate'],
      ['deal.deletion', null],
      ['deal.restore', null],
    ]);
    expect(subs.every((s: { active: boolean }) => s.active)).toBe(true);
  });

  it('uses unique uids', () => {
    const uids = [app.uid, card.uid, webhooks.uid];
    expect(new Set(uids).size).toBe(uids.length);
  });
});

/** Every file of the project we wrote (no node_modules), relative to hubspot_app/. */
function projectFiles(dir = root): string[] {
  return readdirSync(dir).flatMap((name) => {
    if (name === 'node_modules' || name === 'coverage' || name.startsWith('.git')) return [];
    const path = join(dir, name);
    return statSync(path).isDirectory() ? projectFiles(path) : [relative(root, path)];
  });
}

describe('configuration, not hard-coded origins', () => {
  const project = read('hsproject.json');
  const profiles = ['local', 'prod'];

  it('ships only example profiles, each defining every variable the -hsmeta.json files use', () => {
    const used = new Set<string>();
    for (const file of projectFiles().filter((f) => f.endsWith('-hsmeta.json'))) {
      for (const m of readFileSync(join(root, file), 'utf8').matchAll(/\$\{([^}]+)\}/g)) used.add(m[1]);
    }
    expect([...used].sort()).toEqual([
      'BACKEND_ORIGIN',
      'DOCUMENTATION_URL',
      'SUPPORT_EMAIL',
      'SUPPORT_URL',
    ]);
    for (const name of profiles) {
      const profile = read(`src/hsprofile.${name}.example.json`);
      expect(Object.keys(profile.variables).sort()).toEqual([...used].sort());
      expect(profile.variables.BACKEND_ORIGIN).toMatch(/^https:\/\/[^/]+$/);
    }
    // Real profiles (with an account id) are per developer and ignored by git.
    expect(readFileSync(join(root, '.gitignore'), 'utf8')).toContain('src/hsprofile.*.json');
  });

  it.each(profiles)(
    "HubSpot's project parser fills the %s profile's origin into the app and webhooks",
    async (name) => {
      const { variables } = read(`src/hsprofile.${name}.example.json`);
      const origin = variables.BACKEND_ORIGIN as string;
      // Schema validation needs HubSpot's servers; the profile substitution is local.
      const { intermediateRepresentation: ir } = await translate(
        { projectSourceDir: join(root, 'src'), platformVersion: project.platformVersion },
        { skipValidation: true, profile: `${name}.example` },
      );
      const nodes = Object.values(ir.intermediateNodesIndexedByUid) as {
        uid: string;
        config: Record<string, any>;
      }[];
      const byUid = Object.fromEntries(nodes.map((n) => [n.uid, n.config]));
      expect(byUid.mutualplan_app.permittedUrls.fetch).toEqual([origin]);
      expect(byUid.mutualplan_app.permittedUrls.iframe).toEqual([origin]);
      expect(byUid.mutualplan_app.auth.redirectUrls).toEqual([`${origin}/oauth/hubspot/callback`]);
      expect(byUid.mutualplan_app.support.supportEmail).toBe(variables.SUPPORT_EMAIL);
      expect(byUid.mutualplan_webhooks.settings.targetUrl).toBe(`${origin}/webhooks/hubspot`);
      expect(JSON.stringify(nodes)).not.toContain('${');
      expect(ir.profileData?.vars.profileVariables.BACKEND_ORIGIN).toEqual({
        variableType: 'PROFILE_STRING',
        value: origin,
      });
    },
  );

  it('hard-codes no localhost, 127.0.0.1 or example.com in code or config (example profiles aside)', () => {
    const placeholder = /\b(https?:\/\/)?(localhost|127\.0\.0\.1)(:\d+)?\b|[\w.-]*\bexample\.com\b/g;
    const offenders: string[] = [];
    for (const file of projectFiles()) {
      // Example profiles are user configuration; prose (README) and this test name them on purpose.
      if (/hsprofile\.[^.]+\.example\.json$/.test(file) || file === 'package-lock.json') continue;
      if (file.endsWith('.md') || file.endsWith('project.test.ts')) continue;
      const text = readFileSync(join(root, file), 'utf8');
      for (const m of text.matchAll(placeholder)) {
        // The testing library's fake user e-mail is not an origin.
        if (m[0] === 'example.com' && text.slice(m.index! - 11, m.index) === 'fake_email@') continue;
        offenders.push(`${file}: ${m[0]}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
