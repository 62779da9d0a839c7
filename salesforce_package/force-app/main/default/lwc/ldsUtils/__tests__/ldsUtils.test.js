import { reduceErrors } from 'c/ldsUtils';

describe('c-lds-utils reduceErrors', () => {
    it('reads UI API read errors (body is an array)', () => {
        const error = {
            body: [{ message: 'First' }, { message: 'Second' }],
            status: 404
        };

        expect(reduceErrors(error)).toEqual(['First', 'Second']);
    });

    it('reads record and field errors of UI API writes', () => {
        const error = {
            body: {
                message: 'An error occurred while trying to update the record.',
                output: {
                    errors: [{ message: 'Record locked' }],
                    fieldErrors: {
                        Due_Date__c: [{ message: 'Due date is invalid' }]
                    }
                }
            }
        };

        expect(reduceErrors(error)).toEqual([
            'Record locked',
            'Due date is invalid'
        ]);
    });

    it('falls back to body.message when the output has no details', () => {
        const error = {
            body: { message: 'Insufficient access', output: { errors: [] } }
        };

        expect(reduceErrors(error)).toEqual(['Insufficient access']);
    });

    it('reads JavaScript errors and HTTP status texts', () => {
        expect(
            reduceErrors([new Error('Boom'), { statusText: 'Bad Gateway' }])
        ).toEqual(['Boom', 'Bad Gateway']);
    });

    it('drops empty values and duplicates', () => {
        expect(
            reduceErrors([
                null,
                undefined,
                { body: { message: 'Same' } },
                { body: { message: 'Same' } },
                { statusText: '' }
            ])
        ).toEqual(['Same']);
    });
});
