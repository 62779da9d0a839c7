import { createElement } from '@lwc/engine-dom';
import MutualPlanMilestone from 'c/mutualPlanMilestone';

const MILESTONE = {
    id: 'a02000000000002AAA',
    title: 'Identify problems to solve',
    stage: 'Discovery',
    ownerSide: 'buyer',
    ownerName: 'Bea Buyer',
    dueDate: '2020-02-01',
    status: 'in_progress',
    risk: 'at_risk',
    internalOnly: false,
    position: 2,
    overdue: true
};

function createComponent(milestone = MILESTONE, saving = false) {
    const element = createElement('c-mutual-plan-milestone', {
        is: MutualPlanMilestone
    });
    element.milestone = milestone;
    element.saving = saving;
    document.body.appendChild(element);
    return element;
}

describe('c-mutual-plan-milestone', () => {
    afterEach(() => {
        while (document.body.firstChild) {
            document.body.removeChild(document.body.firstChild);
        }
    });

    it('shows title, owner and current values', () => {
        const element = createComponent();
        const root = element.shadowRoot;

        expect(root.textContent).toContain('Identify problems to solve');
        expect(root.textContent).toContain('Buyer · Bea Buyer');
        expect(root.querySelector('.status').value).toBe('in_progress');
        expect(root.querySelector('.risk').value).toBe('at_risk');
        expect(root.querySelector('.due-date').value).toBe('2020-02-01');
        expect(root.querySelector('.overdue-badge').label).toBe('Overdue');
        expect(root.querySelector('.internal-badge')).toBeNull();
    });

    it('names every editor after the milestone, for screen readers', () => {
        const element = createComponent();
        const root = element.shadowRoot;

        expect(root.querySelector('.status').label).toBe(
            'Status of Identify problems to solve'
        );
        expect(root.querySelector('.risk').label).toBe(
            'Risk of Identify problems to solve'
        );
        expect(root.querySelector('.due-date').label).toBe(
            'Due date of Identify problems to solve'
        );
        expect(root.querySelector('.status').options).toHaveLength(3);
    });

    it('marks internal-only milestones and milestones without owner', () => {
        const element = createComponent({
            ...MILESTONE,
            ownerSide: null,
            ownerName: null,
            internalOnly: true,
            overdue: false
        });
        const root = element.shadowRoot;

        expect(root.textContent).toContain('No owner yet');
        expect(root.querySelector('.internal-badge').label).toBe(
            'Internal only'
        );
        expect(root.querySelector('.overdue-badge')).toBeNull();
    });

    it.each([
        ['status', 'done', 'status', 'done'],
        ['risk', 'off_track', 'risk', 'off_track'],
        ['due-date', '2099-01-31', 'dueDate', '2099-01-31'],
        ['due-date', '', 'dueDate', null]
    ])(
        'fires milestonechange when %s changes to "%s"',
        (className, value, field, expected) => {
            const element = createComponent();
            const handler = jest.fn();
            element.addEventListener('milestonechange', handler);

            element.shadowRoot
                .querySelector(`.${className}`)
                .dispatchEvent(
                    new CustomEvent('change', { detail: { value } })
                );

            expect(handler).toHaveBeenCalledTimes(1);
            expect(handler.mock.calls[0][0].detail).toEqual({
                id: 'a02000000000002AAA',
                field,
                value: expected
            });
        }
    );

    it('disables the editors while saving', () => {
        const element = createComponent(MILESTONE, true);
        const root = element.shadowRoot;

        expect(root.querySelector('.status').disabled).toBe(true);
        expect(root.querySelector('.risk').disabled).toBe(true);
        expect(root.querySelector('.due-date').disabled).toBe(true);
    });

    it('is accessible', async () => {
        const element = createComponent();

        await expect(element).toBeAccessible();
    });
});
