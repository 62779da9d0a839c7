import { Text } from '@hubspot/ui-extensions';
import { createRenderer } from '@hubspot/ui-extensions/testing';
import { describe, expect, it } from 'vitest';

import { MilestoneTile } from '../components/MilestoneTile';
import { milestone } from './fixtures';

function render(overrides: Parameters<typeof milestone>[0]) {
  const renderer = createRenderer('crm.record.tab');
  renderer.render(
    <MilestoneTile
      milestone={milestone(overrides)}
      busy={false}
      first
      last
      onChange={async () => true}
      onMove={() => undefined}
    />,
  );
  return renderer;
}

describe('MilestoneTile: waiting on', () => {
  it('names the open milestones it depends on', () => {
    const renderer = render({ id: 'm9', waiting_on: ['Security review', 'Budget approval'] });
    const line = renderer.find(Text, { testId: 'waiting-m9' });
    expect(line.text).toBe('Waiting on Security review, Budget approval');
  });

  it('says nothing when it waits on nothing or is done', () => {
    expect(render({ id: 'm9', waiting_on: [] }).maybeFind(Text, { testId: 'waiting-m9' })).toBeNull();
    expect(render({ id: 'm9' }).maybeFind(Text, { testId: 'waiting-m9' })).toBeNull();
    const done = render({ id: 'm9', status: 'done', waiting_on: ['Security review'] });
    expect(done.maybeFind(Text, { testId: 'waiting-m9' })).toBeNull();
  });
});
