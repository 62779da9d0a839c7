/**
 * Reduces one or more Lightning Data Service, Apex, network or JavaScript errors
 * into a flat list of human-readable messages.
 * @param {FetchResponse|Error|Array<FetchResponse|Error>} errors
 * @return {String[]} Error messages, without duplicates or empty strings
 */
export function reduceErrors(errors) {
    const list = Array.isArray(errors) ? errors : [errors];
    const messages = list
        .filter((error) => !!error)
        .map(messagesOf)
        .reduce((all, current) => all.concat(current), [])
        .filter((message) => typeof message === 'string' && message !== '');
    return [...new Set(messages)];
}

function messagesOf(error) {
    const body = error.body;
    // UI API read errors
    if (Array.isArray(body)) {
        return body.map((entry) => entry.message);
    }
    if (body) {
        // UI API DML errors: record-level errors and field errors
        const output = body.output;
        if (output) {
            const fromOutput = [];
            (output.errors || []).forEach((entry) =>
                fromOutput.push(entry.message)
            );
            Object.values(output.fieldErrors || {}).forEach((entries) =>
                entries.forEach((entry) => fromOutput.push(entry.message))
            );
            if (fromOutput.length > 0) {
                return fromOutput;
            }
        }
        // UI API DML, Apex and network errors
        if (typeof body.message === 'string') {
            return [body.message];
        }
    }
    // JavaScript errors
    if (typeof error.message === 'string') {
        return [error.message];
    }
    // Unknown error shape: fall back to the HTTP status text
    return [error.statusText];
}
