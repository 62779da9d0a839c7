import { createElement } from '@lwc/engine-dom';
import MutualPlan, { fullEditorUrl } from 'c/mutualPlan';
import { getRelatedListRecords } from 'lightning/uiRelatedListApi';
import {
    createRecord,
    deleteRecord,
    getRecord,
    updateRecord
} from 'lightning/uiRecordApi';
import { refreshApex } from '@salesforce/apex';

const mockPlans = require('./data/plans.json');
const mockPlansWithoutLink = require('./data/plansWithoutLink.json');
const mockPlansEmpty = require('./data/plansEmpty.json');
const mockMilestones = require('./data/milestones.json');
const mockMilestonesEmpty = require('./data/milestonesEmpty.json');

// Event name used by the lightning/platformShowToastEvent stub of sfdx-lwc-jest.
const TOAST_EVENT = 'lightning__showtoast';
const OPPORTUNITY_ID = '006000000000001AAA';
const PLAN_ID = 'a01000000000001AAA';
const PLANS_LIST = 'Mutual_Action_Plans__r';
const MILESTONES_LIST = 'Milestones__r';
const UUID_V4 =
    /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const isPlans = (config) => config.relatedListId === PLANS_LIST;
const isMilestones = (config) => config.relatedListId === MILESTONES_LIST;

// Helper function to wait until the microtask queue is empty.
async function flushPromises() {
    return Promise.resolve();
}

async function settle() {
    for (let i = 0; i < 5; i++) {
        // eslint-disable-next-line no-await-in-loop
        await flushPromises();
    }
}

// Mounts the component and waits until its wires have received their config.
async function createComponent() {
    const element = createElement('c-mutual-plan', { is: MutualPlan });
    element.recordId = OPPORTUNITY_ID;
    document.body.appendChild(element);
    await flushPromises();
    return element;
}

// Config of the wire that matches `filter`, read through the test adapter.
function wireConfig(filter) {
    let found;
    getRelatedListRecords.emit(undefined, (config) => {
        if (filter(config)) {
            found = config;
        }
        return false;
    });
    return found;
}

async function renderPlan(plans = mockPlans, milestones = mockMilestones) {
    const element = await createComponent();
    getRelatedListRecords.emit(plans, isPlans);
    await flushPromises();
    getRelatedListRecords.emit(milestones, isMilestones);
    await flushPromises();
    return element;
}

function milestoneRows(element) {
    return Array.from(
        element.shadowRoot.querySelectorAll('c-mutual-plan-milestone')
    );
}

function rowFor(element, title) {
    return milestoneRows(element).find((row) => row.milestone.title === title);
}

function changeField(row, className, value) {
    const input = row.shadowRoot.querySelector(`.${className}`);
    input.dispatchEvent(new CustomEvent('change', { detail: { value } }));
}

function listenForToasts(element) {
    const handler = jest.fn();
    element.addEventListener(TOAST_EVENT, handler);
    return handler;
}

describe('c-mutual-plan', () => {
    afterEach(() => {
        while (document.body.firstChild) {
            document.body.removeChild(document.body.firstChild);
        }
        jest.clearAllMocks();
    });

    describe('loading', () => {
        it('shows a spinner until the plan arrives', async () => {
            const element = await createComponent();

            const spinner =
                element.shadowRoot.querySelector('lightning-spinner');
            expect(spinner.alternativeText).toBe(
                'Loading the mutual action plan'
            );
        });

        it('reads the plans related to the opportunity', async () => {
            await createComponent();

            const config = wireConfig(isPlans);
            expect(config.parentRecordId).toBe(OPPORTUNITY_ID);
            expect(config.fields).toEqual(
                expect.arrayContaining([
                    'Mutual_Action_Plan__c.Name',
                    'Mutual_Action_Plan__c.Buyer_Link__c'
                ])
            );
        });
    });

    describe('empty state', () => {
        it('offers the templates when the opportunity has no plan', async () => {
            const element = await createComponent();
            getRelatedListRecords.emit(mockPlansEmpty, isPlans);
            await flushPromises();

            const emptyState = element.shadowRoot.querySelector('.empty-state');
            expect(emptyState.textContent).toContain(
                'No mutual action plan yet'
            );
            const picker = element.shadowRoot.querySelector(
                'lightning-radio-group'
            );
            expect(picker.options.map((option) => option.value)).toEqual([
                'enterprise',
                'quick'
            ]);
            expect(picker.value).toBe('enterprise');
            expect(element.shadowRoot.querySelector('.copy-link')).toBeNull();
        });

        it('is accessible', async () => {
            const element = await createComponent();
            getRelatedListRecords.emit(mockPlansEmpty, isPlans);
            await flushPromises();

            await expect(element).toBeAccessible();
        });
    });

    describe('creating a plan from a template', () => {
        async function clickCreate(element) {
            element.shadowRoot.querySelector('.create-plan').click();
            await settle();
        }

        beforeEach(() => {
            let counter = 0;
            createRecord.mockImplementation((recordInput) => {
                counter += 1;
                const id =
                    recordInput.apiName === 'Mutual_Action_Plan__c'
                        ? PLAN_ID
                        : `a02${String(counter).padStart(15, '0')}`;
                return Promise.resolve({ id, fields: {} });
            });
        });

        it('creates the plan, then the enterprise milestones in order', async () => {
            const element = await createComponent();
            getRelatedListRecords.emit(mockPlansEmpty, isPlans);
            await flushPromises();
            const toasts = listenForToasts(element);

            await clickCreate(element);

            expect(createRecord).toHaveBeenCalledTimes(12);
            const [planInput] = createRecord.mock.calls[0];
            expect(planInput.apiName).toBe('Mutual_Action_Plan__c');
            expect(planInput.fields.Opportunity__c).toBe(OPPORTUNITY_ID);
            expect(planInput.fields.Plan_UUID__c).toMatch(UUID_V4);

            const milestoneInputs = createRecord.mock.calls
                .slice(1)
                .map(([input]) => input);
            milestoneInputs.forEach((input) => {
                expect(input.apiName).toBe('MAP_Milestone__c');
                expect(input.fields.Plan__c).toBe(PLAN_ID);
                expect(input.fields.Status__c).toBe('not_started');
                expect(input.fields.Risk__c).toBe('on_track');
                expect(input.fields.Milestone_UUID__c).toMatch(UUID_V4);
                expect(input.fields.Due_Date__c).toMatch(/^\d{4}-\d{2}-\d{2}$/);
                expect(input.fields.Name).toBe(input.fields.Title__c);
            });
            expect(
                milestoneInputs.map((input) => [
                    input.fields.Position__c,
                    input.fields.Stage__c,
                    input.fields.Title__c
                ])
            ).toEqual([
                [1, 'Discovery', 'Discovery call'],
                [2, 'Discovery', 'Identify problems to solve'],
                [3, 'Discovery', 'Define requirements and success criteria'],
                [4, 'Validation', 'Customized product demo'],
                [5, 'Validation', 'Follow-up demo with executive team'],
                [6, 'Validation', 'Share project roadmap'],
                [7, 'Final agreements', 'Legal and compliance review'],
                [8, 'Final agreements', 'Client references'],
                [9, 'Final agreements', 'Commercial agreement'],
                [10, 'Implementation', 'Project kickoff'],
                [11, 'Implementation', 'Onboarding']
            ]);
            const uuids = milestoneInputs.map(
                (input) => input.fields.Milestone_UUID__c
            );
            expect(new Set(uuids).size).toBe(11);

            expect(toasts).toHaveBeenCalledTimes(1);
            expect(toasts.mock.calls[0][0].detail.variant).toBe('success');
            expect(refreshApex).toHaveBeenCalledTimes(1);
            expect(deleteRecord).not.toHaveBeenCalled();
        });

        it('creates four steps with the quick template', async () => {
            const element = await createComponent();
            getRelatedListRecords.emit(mockPlansEmpty, isPlans);
            await flushPromises();

            const picker = element.shadowRoot.querySelector(
                'lightning-radio-group'
            );
            picker.dispatchEvent(
                new CustomEvent('change', { detail: { value: 'quick' } })
            );
            await flushPromises();
            await clickCreate(element);

            expect(createRecord).toHaveBeenCalledTimes(5);
            expect(
                createRecord.mock.calls
                    .slice(1)
                    .map(([input]) => input.fields.Title__c)
            ).toEqual([
                'Discovery call',
                'Product demo',
                'Commercial agreement',
                'Project kickoff'
            ]);
        });

        it('removes the half-built plan when a milestone fails', async () => {
            createRecord
                .mockResolvedValueOnce({ id: PLAN_ID, fields: {} })
                .mockResolvedValueOnce({ id: 'a02000000000001AAA', fields: {} })
                .mockRejectedValueOnce({
                    body: {
                        message:
                            'An error occurred while trying to update the record.',
                        output: {
                            errors: [],
                            fieldErrors: {
                                Stage__c: [{ message: 'Stage is too long' }]
                            }
                        }
                    }
                });
            const element = await createComponent();
            getRelatedListRecords.emit(mockPlansEmpty, isPlans);
            await flushPromises();
            const toasts = listenForToasts(element);

            await clickCreate(element);

            expect(createRecord).toHaveBeenCalledTimes(3);
            expect(deleteRecord).toHaveBeenCalledWith(PLAN_ID);
            const toast = toasts.mock.calls[0][0].detail;
            expect(toast.variant).toBe('error');
            expect(toast.message).toBe('Stage is too long');
            expect(
                element.shadowRoot.querySelector('.create-plan').disabled
            ).toBe(false);
        });

        it('reports a plan that cannot be created', async () => {
            createRecord.mockRejectedValueOnce({
                body: { message: 'Insufficient access rights' }
            });
            const element = await createComponent();
            getRelatedListRecords.emit(mockPlansEmpty, isPlans);
            await flushPromises();
            const toasts = listenForToasts(element);

            await clickCreate(element);

            expect(createRecord).toHaveBeenCalledTimes(1);
            expect(deleteRecord).not.toHaveBeenCalled();
            expect(toasts.mock.calls[0][0].detail).toEqual(
                expect.objectContaining({
                    variant: 'error',
                    message: 'Insufficient access rights'
                })
            );
        });
    });

    describe('plan view', () => {
        it('reads the milestones of the plan, ordered by position', async () => {
            const element = await createComponent();
            getRelatedListRecords.emit(mockPlans, isPlans);
            await flushPromises();

            const config = wireConfig(isMilestones);
            expect(config.parentRecordId).toBe(PLAN_ID);
            expect(config.sortBy).toEqual(['MAP_Milestone__c.Position__c']);
            expect(config.fields).toEqual(
                expect.arrayContaining([
                    'MAP_Milestone__c.Status__c',
                    'MAP_Milestone__c.Risk__c',
                    'MAP_Milestone__c.Due_Date__c'
                ])
            );
            expect(element.shadowRoot.querySelector('.plan')).not.toBeNull();
        });

        it('shows progress, risk, overdue count and next milestone', async () => {
            const element = await renderPlan();

            const root = element.shadowRoot;
            expect(root.querySelector('.progress-label').textContent).toBe(
                '20% complete · 1 of 5 milestones done'
            );
            const bar = root.querySelector('[role="progressbar"]');
            expect(bar.getAttribute('aria-valuenow')).toBe('20');
            expect(bar.getAttribute('aria-valuemin')).toBe('0');
            expect(bar.getAttribute('aria-valuemax')).toBe('100');
            // The bar has an accessible name: the same text as the visible label.
            expect(bar.getAttribute('aria-label')).toBe(
                root.querySelector('.progress-label').textContent.trim()
            );
            expect(bar.getAttribute('aria-label')).toContain('20% complete');
            expect(
                bar.querySelector('.slds-progress-bar__value').style.width
            ).toBe('20%');
            expect(root.querySelector('.overdue-count').label).toBe(
                '1 overdue'
            );
            expect(root.querySelector('.next-milestone').textContent).toBe(
                'Identify problems to solve (due 2020-02-01)'
            );
            const badges = Array.from(
                root.querySelectorAll('lightning-badge')
            ).map((badge) => badge.label);
            expect(badges).toContain('At risk');
            expect(root.querySelector('.value-summary').textContent).toBe(
                'Cut onboarding time from six weeks to two.'
            );
        });

        it('groups milestones by stage in position order', async () => {
            const element = await renderPlan();

            const stages = Array.from(
                element.shadowRoot.querySelectorAll('section.stage')
            ).map((section) => ({
                heading: section.querySelector('h3').textContent,
                titles: Array.from(
                    section.querySelectorAll('c-mutual-plan-milestone')
                ).map((row) => row.milestone.title)
            }));
            expect(stages).toEqual([
                {
                    heading: 'Discovery1 of 2 done',
                    titles: ['Discovery call', 'Identify problems to solve']
                },
                {
                    heading: 'Validation0 of 2 done',
                    titles: [
                        'Customized product demo',
                        'Internal pricing review'
                    ]
                },
                {
                    heading: 'Final agreements0 of 1 done',
                    titles: ['Commercial agreement']
                }
            ]);
            const overdue = milestoneRows(element)
                .filter((row) => row.milestone.overdue)
                .map((row) => row.milestone.title);
            expect(overdue).toEqual(['Identify problems to solve']);
        });

        it('says so when the plan has no milestones', async () => {
            const element = await renderPlan(mockPlans, mockMilestonesEmpty);

            expect(
                element.shadowRoot.querySelector('.no-milestones')
            ).not.toBeNull();
            expect(
                element.shadowRoot.querySelector('.progress-label').textContent
            ).toBe('0% complete · 0 of 0 milestones done');
        });

        it('is accessible', async () => {
            const element = await renderPlan();

            await expect(element).toBeAccessible();
        });
    });

    describe('inline edits', () => {
        it('saves a status change with the completion time, then refreshes', async () => {
            const element = await renderPlan();

            changeField(
                rowFor(element, 'Identify problems to solve'),
                'status',
                'done'
            );
            await settle();

            expect(updateRecord).toHaveBeenCalledTimes(1);
            const { fields } = updateRecord.mock.calls[0][0];
            expect(fields).toEqual({
                Id: 'a02000000000002AAA',
                Status__c: 'done',
                Completed_At__c: expect.any(String)
            });
            expect(Number.isNaN(Date.parse(fields.Completed_At__c))).toBe(
                false
            );
            expect(refreshApex).toHaveBeenCalledTimes(1);
            expect(refreshApex.mock.calls[0][0].data).toBe(mockMilestones);
        });

        it('clears the completion time when a milestone is reopened', async () => {
            const element = await renderPlan();

            changeField(
                rowFor(element, 'Discovery call'),
                'status',
                'in_progress'
            );
            await settle();

            expect(updateRecord.mock.calls[0][0].fields).toEqual({
                Id: 'a02000000000001AAA',
                Status__c: 'in_progress',
                Completed_At__c: null
            });
        });

        it('saves a risk change', async () => {
            const element = await renderPlan();

            changeField(
                rowFor(element, 'Customized product demo'),
                'risk',
                'off_track'
            );
            await settle();

            expect(updateRecord.mock.calls[0][0].fields).toEqual({
                Id: 'a02000000000003AAA',
                Risk__c: 'off_track'
            });
        });

        it('saves a due date change', async () => {
            const element = await renderPlan();

            changeField(
                rowFor(element, 'Commercial agreement'),
                'due-date',
                '2099-04-30'
            );
            await settle();

            expect(updateRecord.mock.calls[0][0].fields).toEqual({
                Id: 'a02000000000005AAA',
                Due_Date__c: '2099-04-30'
            });
        });

        it('reports a failed save and reloads the saved values', async () => {
            updateRecord.mockRejectedValueOnce({
                body: {
                    message:
                        'An error occurred while trying to update the record.',
                    output: {
                        errors: [
                            {
                                errorCode: 'INSUFFICIENT_ACCESS_OR_READONLY',
                                message:
                                    'You do not have access to this milestone.'
                            }
                        ],
                        fieldErrors: {}
                    }
                }
            });
            const element = await renderPlan();
            const toasts = listenForToasts(element);

            changeField(rowFor(element, 'Discovery call'), 'risk', 'at_risk');
            await settle();

            expect(toasts).toHaveBeenCalledTimes(1);
            expect(toasts.mock.calls[0][0].detail).toEqual(
                expect.objectContaining({
                    variant: 'error',
                    title: 'Could not update the milestone',
                    message: 'You do not have access to this milestone.'
                })
            );
            expect(refreshApex).toHaveBeenCalledTimes(1);
            expect(rowFor(element, 'Discovery call').saving).toBe(false);
        });
    });

    describe('buyer link', () => {
        const originalClipboard = navigator.clipboard;

        afterEach(() => {
            Object.defineProperty(navigator, 'clipboard', {
                value: originalClipboard,
                configurable: true
            });
        });

        function mockClipboard(writeText) {
            Object.defineProperty(navigator, 'clipboard', {
                value: { writeText },
                configurable: true
            });
        }

        it('copies the link and confirms with a toast', async () => {
            const writeText = jest.fn().mockResolvedValue();
            mockClipboard(writeText);
            const element = await renderPlan();
            const toasts = listenForToasts(element);

            element.shadowRoot.querySelector('.copy-link').click();
            await settle();

            expect(writeText).toHaveBeenCalledWith(
                'https://map.example.com/p/Zm9vYmFy'
            );
            expect(toasts.mock.calls[0][0].detail).toEqual(
                expect.objectContaining({
                    variant: 'success',
                    title: 'Buyer link copied'
                })
            );
        });

        it('shows the link in an error toast when the clipboard refuses', async () => {
            mockClipboard(jest.fn().mockRejectedValue(new Error('Denied')));
            const element = await renderPlan();
            const toasts = listenForToasts(element);

            element.shadowRoot.querySelector('.copy-link').click();
            await settle();

            expect(toasts.mock.calls[0][0].detail).toEqual(
                expect.objectContaining({
                    variant: 'error',
                    message:
                        'Copy it by hand: https://map.example.com/p/Zm9vYmFy'
                })
            );
        });

        it('is disabled until MutualPlan has set the link', async () => {
            const element = await renderPlan(mockPlansWithoutLink);

            expect(
                element.shadowRoot.querySelector('.copy-link').disabled
            ).toBe(true);
            expect(
                element.shadowRoot.querySelector('.buyer-link').textContent
            ).toContain('MutualPlan adds the link after its next sync.');
        });
    });

    describe('errors', () => {
        it('shows why the plan could not be loaded', async () => {
            const element = await createComponent();
            getRelatedListRecords.emitError(
                {
                    body: [
                        {
                            errorCode: 'INVALID_TYPE',
                            message: 'Mutual_Action_Plan__c is not supported.'
                        }
                    ],
                    status: 400,
                    statusText: 'Bad Request'
                },
                isPlans
            );
            await flushPromises();

            const alert = element.shadowRoot.querySelector('.plan-error');
            expect(alert.getAttribute('role')).toBe('alert');
            expect(alert.textContent).toContain(
                'Mutual_Action_Plan__c is not supported.'
            );
            expect(element.shadowRoot.querySelector('.empty-state')).toBeNull();
        });

        it('shows why the milestones could not be loaded', async () => {
            const element = await createComponent();
            getRelatedListRecords.emit(mockPlans, isPlans);
            await flushPromises();
            getRelatedListRecords.emitError(undefined, isMilestones);
            await flushPromises();

            const alert = element.shadowRoot.querySelector('.milestone-error');
            expect(alert.textContent).toContain(
                'The requested resource does not exist'
            );
            expect(milestoneRows(element)).toHaveLength(0);
        });
    });

    it('refreshes plan and milestones on demand', async () => {
        const element = await renderPlan();

        element.shadowRoot.querySelector('.refresh').click();
        await settle();

        expect(refreshApex).toHaveBeenCalledTimes(2);
    });
});

describe('Open full editor', () => {
    afterEach(() => {
        while (document.body.firstChild) {
            document.body.removeChild(document.body.firstChild);
        }
    });

    it("links to Sign in with Salesforce, then this opportunity's plan", async () => {
        const element = createElement('c-mutual-plan', { is: MutualPlan });
        element.recordId = OPPORTUNITY_ID;
        element.backendOrigin = 'https://plans.example.com/';
        document.body.appendChild(element);
        await flushPromises();
        const link = element.shadowRoot.querySelector('a.full-editor');
        expect(link.textContent).toBe('Open full editor');
        expect(link.getAttribute('href')).toBe(
            'https://plans.example.com/login/salesforce?next=' +
                encodeURIComponent(
                    `/app/plans/by-deal/salesforce/current/${OPPORTUNITY_ID}`
                )
        );
        expect(link.getAttribute('target')).toBe('_blank');
        expect(link.getAttribute('rel')).toContain('noopener');
    });

    it('is hidden until an admin sets the backend address', async () => {
        const element = await createComponent();
        expect(element.shadowRoot.querySelector('a.full-editor')).toBeNull();
    });

    it('refuses addresses that are not an https origin', () => {
        expect(
            fullEditorUrl('http://plans.example.com', OPPORTUNITY_ID)
        ).toBeNull();
        // eslint-disable-next-line no-script-url
        expect(fullEditorUrl('javascript:alert(1)', OPPORTUNITY_ID)).toBeNull();
        expect(
            fullEditorUrl('https://plans.example.com/x', OPPORTUNITY_ID)
        ).toBeNull();
        expect(fullEditorUrl('https://plans.example.com', '')).toBeNull();
        expect(
            fullEditorUrl('http://localhost:5000', OPPORTUNITY_ID)
        ).toBeNull();
    });
});

describe('forecast from the Opportunity fields', () => {
    afterEach(() => {
        while (document.body.firstChild) {
            document.body.removeChild(document.body.firstChild);
        }
        jest.clearAllMocks();
    });

    it('shows health and win probability written by the backend', async () => {
        const element = await renderPlan();
        expect(
            element.shadowRoot.querySelector('[data-id="forecast"]')
        ).toBeNull();
        getRecord.emit({
            fields: {
                MAP_Health__c: { value: 'stalled' },
                MAP_Win_Probability__c: { value: 62 }
            }
        });
        await flushPromises();
        const text = element.shadowRoot.querySelector(
            '[data-id="forecast"]'
        ).textContent;
        expect(text).toContain('Health: Stalled');
        expect(text).toContain('Win probability: 62%');
        expect(
            element.shadowRoot.querySelector('[data-id="coverage"]')
        ).toBeNull();
    });

    it('shows the stakeholder coverage written by the backend', async () => {
        const element = await renderPlan();
        getRecord.emit({
            fields: {
                MAP_Coverage__c: {
                    value: 'Last 14 days: Engaged: Champion; Quiet: Decision maker'
                }
            }
        });
        await flushPromises();
        const text = element.shadowRoot.querySelector(
            '[data-id="coverage"]'
        ).textContent;
        expect(text).toContain(
            'Stakeholder coverage: Last 14 days: Engaged: Champion; Quiet: Decision maker'
        );
    });
});

describe('content blocks', () => {
    afterEach(() => {
        while (document.body.firstChild) {
            document.body.removeChild(document.body.firstChild);
        }
        jest.clearAllMocks();
    });

    function plansWithContent(count) {
        const plans = JSON.parse(JSON.stringify(mockPlans));
        plans.records[0].fields.Content_Count__c = {
            displayValue: null,
            value: count
        };
        return plans;
    }

    it('reads the content count the backend writes on the plan', async () => {
        await createComponent();
        const config = wireConfig(isPlans);
        expect(config.fields).toContain(
            'Mutual_Action_Plan__c.Content_Count__c'
        );
    });

    it('shows the count and links to the content page after Salesforce sign-in', async () => {
        const element = createElement('c-mutual-plan', { is: MutualPlan });
        element.recordId = OPPORTUNITY_ID;
        element.backendOrigin = 'https://plans.example.com';
        document.body.appendChild(element);
        await flushPromises();
        getRelatedListRecords.emit(plansWithContent(3), isPlans);
        await flushPromises();

        const root = element.shadowRoot;
        expect(root.querySelector('.content-count').textContent).toContain(
            '3 content blocks'
        );
        const link = root.querySelector('a.content-link');
        expect(link.textContent).toBe('Open content');
        expect(link.getAttribute('href')).toBe(
            'https://plans.example.com/login/salesforce?next=' +
                encodeURIComponent(
                    `/app/plans/by-deal/salesforce/current/${OPPORTUNITY_ID}?to=content`
                )
        );
        expect(link.getAttribute('rel')).toContain('noopener');
    });

    it('says so when the plan has no content, without a link when no backend is set', async () => {
        const element = await renderPlan(plansWithContent(0));
        const root = element.shadowRoot;
        expect(root.querySelector('.content-count').textContent).toContain(
            'No content yet'
        );
        expect(root.querySelector('a.content-link')).toBeNull();
    });

    it('shows nothing about content before the backend has written the count', async () => {
        const element = await renderPlan();
        expect(element.shadowRoot.querySelector('.content-count')).toBeNull();
    });

    it('builds the content page URL only for an https origin', () => {
        expect(
            fullEditorUrl('http://plans.example.com', OPPORTUNITY_ID, 'content')
        ).toBeNull();
    });
});
