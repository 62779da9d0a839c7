/** No plan on this deal yet: pick a template (and optional title) and create one. */
import {
  Button,
  EmptyState,
  Flex,
  Input,
  Text,
  ToggleGroup,
} from '@hubspot/ui-extensions';
import { useCrmProperties } from '@hubspot/ui-extensions/crm';
import { useState } from 'react';

import type { Template } from '../types';

/** Used when the backend sends no template list. */
const FALLBACK_TEMPLATES: Template[] = [
  { key: 'enterprise', name: 'Enterprise', description: 'Full evaluation in four stages', milestone_count: 0 },
  { key: 'quick', name: 'Quick', description: 'Short plan for a fast deal', milestone_count: 0 },
];

interface Props {
  templates: Template[];
  busy: boolean;
  /** The deal's name goes with the request: the backend keeps it and titles the plan with it. */
  onCreate: (template: string, title?: string, dealName?: string) => void;
}

export function EmptyPlan({ templates, busy, onCreate }: Props) {
  const choices = templates.length ? templates : FALLBACK_TEMPLATES;
  const [template, setTemplate] = useState((choices.find((t) => t.default) ?? choices[0]).key);
  const [title, setTitle] = useState('');
  // The extension context carries only the deal's id; its name is a CRM property.
  const { properties } = useCrmProperties(['dealname']);
  const dealName = properties.dealname?.trim() || undefined;

  return (
    <EmptyState testId="empty" title="No mutual action plan yet" layout="vertical" imageName="target">
      <Flex direction="column" gap="sm">
        <Text>Start a plan for this deal from a template; you can change everything later.</Text>
        <ToggleGroup
          testId="template"
          toggleType="radioButtonList"
          name="template"
          label="Template"
          value={template}
          onChange={(value) => setTemplate(value)}
          options={choices.map((t) => ({
            label: t.milestone_count ? `${t.name} (${t.milestone_count} milestones)` : t.name,
            value: t.key,
            description: t.description,
          }))}
        />
        <Input
          testId="title"
          name="title"
          label="Plan title (optional)"
          placeholder={dealName}
          value={title}
          onChange={setTitle}
        />
        <Button
          testId="create"
          variant="primary"
          disabled={busy}
          onClick={() => onCreate(template, title.trim() || undefined, dealName)}
        >
          Create plan
        </Button>
      </Flex>
    </EmptyState>
  );
}
