import { LightningElement, api } from 'lwc';
import {
    OWNER_SIDE_LABELS,
    RISK_OPTIONS,
    STATUS_OPTIONS
} from 'c/mutualPlanModel';

/**
 * One milestone row with inline editors for status, risk and due date.
 * It does not write records: it fires `milestonechange` with
 * { id, field: 'status' | 'risk' | 'dueDate', value } and the parent saves.
 */
export default class MutualPlanMilestone extends LightningElement {
    /** Plain milestone object built by c-mutual-plan. */
    @api milestone;

    /** True while the parent saves a change to this milestone. */
    @api saving = false;

    statusOptions = STATUS_OPTIONS;
    riskOptions = RISK_OPTIONS;

    get title() {
        return this.milestone.title;
    }

    get ownerLabel() {
        const side = OWNER_SIDE_LABELS[this.milestone.ownerSide];
        const name = this.milestone.ownerName;
        if (side && name) {
            return `${side} · ${name}`;
        }
        return side || name || 'No owner yet';
    }

    get isDone() {
        return this.milestone.status === 'done';
    }

    get titleClass() {
        return this.isDone
            ? 'slds-text-body_regular slds-text-color_weak milestone-done'
            : 'slds-text-body_regular';
    }

    get statusLabel() {
        return `Status of ${this.title}`;
    }

    get riskLabel() {
        return `Risk of ${this.title}`;
    }

    get dueDateLabel() {
        return `Due date of ${this.title}`;
    }

    handleStatusChange(event) {
        this.notify('status', event.detail.value);
    }

    handleRiskChange(event) {
        this.notify('risk', event.detail.value);
    }

    handleDueDateChange(event) {
        this.notify('dueDate', event.detail.value || null);
    }

    notify(field, value) {
        this.dispatchEvent(
            new CustomEvent('milestonechange', {
                detail: { id: this.milestone.id, field, value }
            })
        );
    }
}
