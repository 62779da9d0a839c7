/**
 * Pure functions behind the mutualPlan component: no LDS, no DOM.
 */

export const STATUS_OPTIONS = [
    { label: 'Not started', value: 'not_started' },
    { label: 'In progress', value: 'in_progress' },
    { label: 'Done', value: 'done' }
];

export const RISK_OPTIONS = [
    { label: 'On track', value: 'on_track' },
    { label: 'At risk', value: 'at_risk' },
    { label: 'Off track', value: 'off_track' }
];

export const OWNER_SIDE_LABELS = {
    buyer: 'Buyer',
    seller: 'Seller',
    both: 'Buyer and seller'
};

const RISK_ORDER = ['on_track', 'at_risk', 'off_track'];

/** Label of a picklist value, or the value itself when unknown. */
export function labelOf(options, value) {
    const option = options.find((entry) => entry.value === value);
    return option ? option.label : value;
}

/**
 * Namespace prefix of a schema object name, e.g. 'mapns__' for
 * 'mapns__Mutual_Action_Plan__c' and '' for 'Mutual_Action_Plan__c'.
 * Relationship names (relatedListId) cannot be imported from @salesforce/schema,
 * so they are built from this prefix and work inside a namespaced package.
 */
export function namespacePrefix(objectApiName) {
    const first = objectApiName.indexOf('__');
    const suffix = objectApiName.lastIndexOf('__');
    return first < suffix ? objectApiName.slice(0, first + 2) : '';
}

/** Qualified field name for the UI API, e.g. 'MAP_Milestone__c.Status__c'. */
export function qualified(field) {
    return `${field.objectApiName}.${field.fieldApiName}`;
}

/** Value of a field in a UI API record, or null. */
export function valueOf(record, field) {
    if (!record) {
        return null;
    }
    const entry = record.fields[field.fieldApiName];
    return entry && entry.value !== undefined ? entry.value : null;
}

/** Today as an ISO date (YYYY-MM-DD) in the user's time zone. */
export function todayIso(now = new Date()) {
    const pad = (number) => String(number).padStart(2, '0');
    return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

/** Adds days to an ISO date and returns an ISO date. */
export function addDays(isoDate, days) {
    const [year, month, day] = isoDate.split('-').map(Number);
    const date = new Date(Date.UTC(year, month - 1, day + days));
    return date.toISOString().slice(0, 10);
}

/** Random UUID (version 4) for the external id fields. */
export function newUuid() {
    const cryptoApi = window.crypto;
    if (cryptoApi && typeof cryptoApi.randomUUID === 'function') {
        return cryptoApi.randomUUID();
    }
    const bytes = new Uint8Array(16);
    cryptoApi.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    const hex = Array.from(bytes, (byte) =>
        byte.toString(16).padStart(2, '0')
    ).join('');
    return [
        hex.slice(0, 8),
        hex.slice(8, 12),
        hex.slice(12, 16),
        hex.slice(16, 20),
        hex.slice(20)
    ].join('-');
}

/** Sorts milestones by position, then title; milestones without position go last. */
export function sortMilestones(milestones) {
    return [...milestones].sort((a, b) => {
        const left = a.position === null ? Infinity : a.position;
        const right = b.position === null ? Infinity : b.position;
        if (left !== right) {
            return left - right;
        }
        return (a.title || '').localeCompare(b.title || '');
    });
}

/**
 * Groups milestones by stage, in the order in which stages first appear
 * when the milestones are sorted by position.
 */
export function groupByStage(milestones) {
    const stages = [];
    const byName = new Map();
    sortMilestones(milestones).forEach((milestone) => {
        const name = milestone.stage || 'Other';
        let stage = byName.get(name);
        if (!stage) {
            stage = { name, milestones: [] };
            byName.set(name, stage);
            stages.push(stage);
        }
        stage.milestones.push(milestone);
    });
    return stages.map((stage) => {
        const done = stage.milestones.filter(
            (milestone) => milestone.status === 'done'
        ).length;
        return {
            ...stage,
            key: stage.name,
            doneLabel: `${done} of ${stage.milestones.length} done`
        };
    });
}

/** A milestone is overdue when it is open and its due date has passed. */
export function isOverdue(milestone, today) {
    return (
        milestone.status !== 'done' &&
        !!milestone.dueDate &&
        milestone.dueDate < today
    );
}

/**
 * Summary shown in the header: progress, next milestone, overdue count and
 * worst risk of the open milestones (same rules as the MutualPlan backend).
 */
export function summarize(milestones, today) {
    const total = milestones.length;
    const done = milestones.filter((m) => m.status === 'done').length;
    const open = sortMilestones(milestones).filter((m) => m.status !== 'done');
    const next =
        [...open]
            .filter((m) => !!m.dueDate)
            .sort((a, b) => a.dueDate.localeCompare(b.dueDate))[0] ||
        open[0] ||
        null;
    const risk =
        RISK_ORDER[Math.max(0, ...open.map((m) => RISK_ORDER.indexOf(m.risk)))];
    return {
        total,
        done,
        progress: total === 0 ? 0 : Math.round((done / total) * 100),
        next,
        overdue: open.filter((m) => isOverdue(m, today)).length,
        risk
    };
}

/**
 * Field values of the milestones a template creates, without the master-detail id.
 * @param {Object} template one of TEMPLATES
 * @param {String} today ISO date the due dates count from
 */
export function milestonesFromTemplate(template, today) {
    return template.steps.map((step, index) => ({
        uuid: newUuid(),
        stage: step.stage,
        title: step.title,
        ownerSide: step.ownerSide,
        dueDate: addDays(today, step.dueInDays),
        position: index + 1
    }));
}
