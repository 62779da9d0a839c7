import {
    addDays,
    groupByStage,
    isOverdue,
    milestonesFromTemplate,
    namespacePrefix,
    newUuid,
    summarize,
    todayIso,
    valueOf
} from 'c/mutualPlanModel';

const UUID_V4 =
    /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function milestone(overrides) {
    return {
        id: overrides.title,
        stage: 'Discovery',
        status: 'not_started',
        risk: 'on_track',
        dueDate: null,
        position: null,
        ...overrides
    };
}

describe('c-mutual-plan-model', () => {
    describe('namespacePrefix', () => {
        it('is empty without a namespace', () => {
            expect(namespacePrefix('Mutual_Action_Plan__c')).toBe('');
        });

        it('returns the prefix of a namespaced object', () => {
            expect(namespacePrefix('mapns__Mutual_Action_Plan__c')).toBe(
                'mapns__'
            );
        });
    });

    describe('dates', () => {
        it('adds days across months and years', () => {
            expect(addDays('2026-12-20', 14)).toBe('2027-01-03');
            expect(addDays('2028-02-28', 1)).toBe('2028-02-29');
        });

        it('formats today as a local ISO date', () => {
            expect(todayIso(new Date(2026, 0, 5, 23, 30))).toBe('2026-01-05');
        });
    });

    describe('newUuid', () => {
        it('makes distinct version 4 UUIDs', () => {
            const ids = Array.from({ length: 50 }, () => newUuid());
            ids.forEach((id) => expect(id).toMatch(UUID_V4));
            expect(new Set(ids).size).toBe(50);
        });

        it('falls back to getRandomValues without randomUUID', () => {
            const original = window.crypto.randomUUID;
            window.crypto.randomUUID = undefined;
            try {
                expect(newUuid()).toMatch(UUID_V4);
            } finally {
                window.crypto.randomUUID = original;
            }
        });
    });

    describe('groupByStage', () => {
        it('orders by position and keeps stages in first-seen order', () => {
            const stages = groupByStage([
                milestone({ title: 'C', stage: 'Validation', position: 3 }),
                milestone({ title: 'A', stage: 'Discovery', position: 1 }),
                milestone({ title: 'Z', stage: null, position: null }),
                milestone({
                    title: 'B',
                    stage: 'Discovery',
                    position: 2,
                    status: 'done'
                })
            ]);

            expect(
                stages.map((stage) => [
                    stage.name,
                    stage.milestones.map((m) => m.title),
                    stage.doneLabel
                ])
            ).toEqual([
                ['Discovery', ['A', 'B'], '1 of 2 done'],
                ['Validation', ['C'], '0 of 1 done'],
                ['Other', ['Z'], '0 of 1 done']
            ]);
        });
    });

    describe('summarize', () => {
        const today = '2026-06-15';

        it('computes progress, overdue count, worst open risk and next milestone', () => {
            const summary = summarize(
                [
                    milestone({
                        title: 'Done but off track',
                        status: 'done',
                        risk: 'off_track',
                        dueDate: '2026-01-01',
                        position: 1
                    }),
                    milestone({
                        title: 'Late',
                        status: 'in_progress',
                        risk: 'at_risk',
                        dueDate: '2026-06-01',
                        position: 2
                    }),
                    milestone({
                        title: 'Later',
                        dueDate: '2026-07-01',
                        position: 3
                    }),
                    milestone({ title: 'Undated', position: 4 })
                ],
                today
            );

            expect(summary).toEqual(
                expect.objectContaining({
                    total: 4,
                    done: 1,
                    progress: 25,
                    overdue: 1,
                    risk: 'at_risk'
                })
            );
            expect(summary.next.title).toBe('Late');
        });

        it('handles an empty and a finished plan', () => {
            expect(summarize([], today)).toEqual({
                total: 0,
                done: 0,
                progress: 0,
                next: null,
                overdue: 0,
                risk: 'on_track'
            });
            const finished = summarize(
                [milestone({ title: 'A', status: 'done' })],
                today
            );
            expect(finished.progress).toBe(100);
            expect(finished.next).toBeNull();
        });

        it('never counts a done milestone as overdue', () => {
            expect(
                isOverdue(
                    milestone({
                        title: 'A',
                        status: 'done',
                        dueDate: '2020-01-01'
                    }),
                    today
                )
            ).toBe(false);
            expect(
                isOverdue(milestone({ title: 'B', dueDate: today }), today)
            ).toBe(false);
        });
    });

    it('builds template milestones with positions, due dates and UUIDs', () => {
        const steps = milestonesFromTemplate(
            {
                steps: [
                    {
                        stage: 'S1',
                        title: 'One',
                        ownerSide: 'buyer',
                        dueInDays: 0
                    },
                    {
                        stage: 'S2',
                        title: 'Two',
                        ownerSide: 'seller',
                        dueInDays: 10
                    }
                ]
            },
            '2026-11-26'
        );

        expect(steps).toEqual([
            {
                uuid: expect.stringMatching(UUID_V4),
                stage: 'S1',
                title: 'One',
                ownerSide: 'buyer',
                dueDate: '2026-11-26',
                position: 1
            },
            {
                uuid: expect.stringMatching(UUID_V4),
                stage: 'S2',
                title: 'Two',
                ownerSide: 'seller',
                dueDate: '2026-12-06',
                position: 2
            }
        ]);
    });

    it('reads field values from UI API records', () => {
        const record = { fields: { Status__c: { value: 'done' } } };

        expect(valueOf(record, { fieldApiName: 'Status__c' })).toBe('done');
        expect(valueOf(record, { fieldApiName: 'Risk__c' })).toBeNull();
        expect(valueOf(undefined, { fieldApiName: 'Status__c' })).toBeNull();
    });
});
