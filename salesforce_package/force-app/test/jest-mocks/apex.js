// Replaces @salesforce/apex in Jest so that tests can assert refreshApex calls.
export const refreshApex = jest.fn().mockResolvedValue();
export const getSObjectValue = jest.fn();
