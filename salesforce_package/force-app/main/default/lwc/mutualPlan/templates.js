/**
 * Plan templates packaged with the component. Each step becomes one MAP_Milestone__c.
 * dueInDays counts from the day the plan is created; ownerSide is buyer, seller or both.
 * Stage names follow the default MutualPlan stages, so admins can map them to
 * Opportunity stages in MutualPlan.
 */
export const TEMPLATES = [
    {
        id: 'enterprise',
        label: 'Enterprise',
        description:
            'Eleven milestones in four stages, for deals with several stakeholders.',
        steps: [
            {
                stage: 'Discovery',
                title: 'Discovery call',
                ownerSide: 'both',
                dueInDays: 7
            },
            {
                stage: 'Discovery',
                title: 'Identify problems to solve',
                ownerSide: 'buyer',
                dueInDays: 14
            },
            {
                stage: 'Discovery',
                title: 'Define requirements and success criteria',
                ownerSide: 'both',
                dueInDays: 21
            },
            {
                stage: 'Validation',
                title: 'Customized product demo',
                ownerSide: 'seller',
                dueInDays: 30
            },
            {
                stage: 'Validation',
                title: 'Follow-up demo with executive team',
                ownerSide: 'both',
                dueInDays: 40
            },
            {
                stage: 'Validation',
                title: 'Share project roadmap',
                ownerSide: 'seller',
                dueInDays: 45
            },
            {
                stage: 'Final agreements',
                title: 'Legal and compliance review',
                ownerSide: 'buyer',
                dueInDays: 55
            },
            {
                stage: 'Final agreements',
                title: 'Client references',
                ownerSide: 'seller',
                dueInDays: 55
            },
            {
                stage: 'Final agreements',
                title: 'Commercial agreement',
                ownerSide: 'both',
                dueInDays: 60
            },
            {
                stage: 'Implementation',
                title: 'Project kickoff',
                ownerSide: 'both',
                dueInDays: 70
            },
            {
                stage: 'Implementation',
                title: 'Onboarding',
                ownerSide: 'seller',
                dueInDays: 90
            }
        ]
    },
    {
        id: 'quick',
        label: 'Quick',
        description: 'Four steps for short deals.',
        steps: [
            {
                stage: 'Discovery',
                title: 'Discovery call',
                ownerSide: 'both',
                dueInDays: 3
            },
            {
                stage: 'Validation',
                title: 'Product demo',
                ownerSide: 'seller',
                dueInDays: 10
            },
            {
                stage: 'Final agreements',
                title: 'Commercial agreement',
                ownerSide: 'both',
                dueInDays: 21
            },
            {
                stage: 'Implementation',
                title: 'Project kickoff',
                ownerSide: 'both',
                dueInDays: 30
            }
        ]
    }
];

export function findTemplate(templateId) {
    return TEMPLATES.find((template) => template.id === templateId);
}
