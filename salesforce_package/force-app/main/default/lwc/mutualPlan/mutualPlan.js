import { LightningElement, api, wire } from 'lwc';
import { getRelatedListRecords } from 'lightning/uiRelatedListApi';
import {
    createRecord,
    deleteRecord,
    getRecord,
    updateRecord
} from 'lightning/uiRecordApi';
import { ShowToastEvent } from 'lightning/platformShowToastEvent';
import { refreshApex } from '@salesforce/apex';
import { reduceErrors } from 'c/ldsUtils';
import {
    RISK_OPTIONS,
    groupByStage,
    isOverdue,
    labelOf,
    milestonesFromTemplate,
    namespacePrefix,
    newUuid,
    qualified,
    summarize,
    todayIso,
    valueOf
} from 'c/mutualPlanModel';
import { TEMPLATES, findTemplate } from './templates';

import PLAN_OBJECT from '@salesforce/schema/Mutual_Action_Plan__c';
// Written by the backend from the tenant's history (README "Analytics and forecast").
import OPP_HEALTH_FIELD from '@salesforce/schema/Opportunity.MAP_Health__c';
import OPP_WIN_PROBABILITY_FIELD from '@salesforce/schema/Opportunity.MAP_Win_Probability__c';
import OPP_COVERAGE_FIELD from '@salesforce/schema/Opportunity.MAP_Coverage__c';
import PLAN_NAME_FIELD from '@salesforce/schema/Mutual_Action_Plan__c.Name';
import PLAN_OPPORTUNITY_FIELD from '@salesforce/schema/Mutual_Action_Plan__c.Opportunity__c';
import PLAN_UUID_FIELD from '@salesforce/schema/Mutual_Action_Plan__c.Plan_UUID__c';
import PLAN_BUYER_LINK_FIELD from '@salesforce/schema/Mutual_Action_Plan__c.Buyer_Link__c';
import PLAN_GO_LIVE_FIELD from '@salesforce/schema/Mutual_Action_Plan__c.Go_Live_Date__c';
import PLAN_VALUE_SUMMARY_FIELD from '@salesforce/schema/Mutual_Action_Plan__c.Value_Summary__c';
// Written by the backend on every push: the plan's content blocks (videos, decks, notes, files).
import PLAN_CONTENT_COUNT_FIELD from '@salesforce/schema/Mutual_Action_Plan__c.Content_Count__c';

import MILESTONE_OBJECT from '@salesforce/schema/MAP_Milestone__c';
import MILESTONE_NAME_FIELD from '@salesforce/schema/MAP_Milestone__c.Name';
import MILESTONE_PLAN_FIELD from '@salesforce/schema/MAP_Milestone__c.Plan__c';
import MILESTONE_UUID_FIELD from '@salesforce/schema/MAP_Milestone__c.Milestone_UUID__c';
import MILESTONE_STAGE_FIELD from '@salesforce/schema/MAP_Milestone__c.Stage__c';
import MILESTONE_TITLE_FIELD from '@salesforce/schema/MAP_Milestone__c.Title__c';
import MILESTONE_OWNER_SIDE_FIELD from '@salesforce/schema/MAP_Milestone__c.Owner_Side__c';
import MILESTONE_OWNER_NAME_FIELD from '@salesforce/schema/MAP_Milestone__c.Owner_Name__c';
import MILESTONE_DUE_DATE_FIELD from '@salesforce/schema/MAP_Milestone__c.Due_Date__c';
import MILESTONE_STATUS_FIELD from '@salesforce/schema/MAP_Milestone__c.Status__c';
import MILESTONE_RISK_FIELD from '@salesforce/schema/MAP_Milestone__c.Risk__c';
import MILESTONE_INTERNAL_FIELD from '@salesforce/schema/MAP_Milestone__c.Internal_Only__c';
import MILESTONE_POSITION_FIELD from '@salesforce/schema/MAP_Milestone__c.Position__c';
import MILESTONE_COMPLETED_AT_FIELD from '@salesforce/schema/MAP_Milestone__c.Completed_At__c';

// Relationship names cannot be imported from @salesforce/schema; build them with
// the package namespace so that the component also works in subscriber orgs.
const PREFIX = namespacePrefix(PLAN_OBJECT.objectApiName);
const PLANS_RELATED_LIST = `${PREFIX}Mutual_Action_Plans__r`;
const MILESTONES_RELATED_LIST = `${PREFIX}Milestones__r`;

const PLAN_FIELDS = [
    PLAN_NAME_FIELD,
    PLAN_UUID_FIELD,
    PLAN_BUYER_LINK_FIELD,
    PLAN_GO_LIVE_FIELD,
    PLAN_VALUE_SUMMARY_FIELD,
    PLAN_CONTENT_COUNT_FIELD
].map(qualified);

const MILESTONE_FIELDS = [
    MILESTONE_NAME_FIELD,
    MILESTONE_UUID_FIELD,
    MILESTONE_STAGE_FIELD,
    MILESTONE_TITLE_FIELD,
    MILESTONE_OWNER_SIDE_FIELD,
    MILESTONE_OWNER_NAME_FIELD,
    MILESTONE_DUE_DATE_FIELD,
    MILESTONE_STATUS_FIELD,
    MILESTONE_RISK_FIELD,
    MILESTONE_INTERNAL_FIELD,
    MILESTONE_POSITION_FIELD
].map(qualified);

// Milestone fields edited inline, by the name c-mutual-plan-milestone uses.
const EDITABLE_FIELDS = {
    status: MILESTONE_STATUS_FIELD,
    risk: MILESTONE_RISK_FIELD,
    dueDate: MILESTONE_DUE_DATE_FIELD
};

const NAME_MAX_LENGTH = 80;

/**
 * Mutual action plan of an opportunity, read and edited through Lightning Data
 * Service only, so it keeps working when the MutualPlan backend is slow. The
 * backend notices these edits by polling SystemModstamp.
 */
// The full editor lives on our backend: "Open full editor" signs the rep in with Salesforce
// (OpenID Connect) and lands on this opportunity's plan. No token is kept in the org; the
// backend's address is the admin's choice in Lightning App Builder (backendOrigin).
const BY_DEAL_PATH = '/app/plans/by-deal/salesforce/current/';

// page 'content': the plan's content blocks page rather than the plan itself.
export function fullEditorUrl(origin, recordId, page) {
    const base = String(origin || '')
        .trim()
        .replace(/\/+$/, '');
    // https only: the link starts a sign-in, whose session must never cross plain http.
    const secure = /^https:\/\/[^/?#\s]+$/.test(base);
    if (!secure || !recordId) {
        return null;
    }
    const target =
        BY_DEAL_PATH + recordId + (page === 'content' ? '?to=content' : '');
    const next = encodeURIComponent(target);
    return `${base}/login/salesforce?next=${next}`;
}

const HEALTH_LABELS = {
    on_track: 'On track',
    at_risk: 'At risk',
    stalled: 'Stalled'
};

export default class MutualPlan extends LightningElement {
    @api recordId;
    // Lightning App Builder design attribute (js-meta.xml): https origin of MutualPlan.
    @api backendOrigin;

    get fullEditorHref() {
        return fullEditorUrl(this.backendOrigin, this.recordId);
    }

    get contentHref() {
        return fullEditorUrl(this.backendOrigin, this.recordId, 'content');
    }

    plansResult;
    planRecord;
    planId;
    selectedTemplateId = TEMPLATES[0].id;
    isCreating = false;
    savingIds = [];

    @wire(getRecord, {
        recordId: '$recordId',
        optionalFields: [
            OPP_HEALTH_FIELD,
            OPP_WIN_PROBABILITY_FIELD,
            OPP_COVERAGE_FIELD
        ]
    })
    opportunity;

    get health() {
        const value = this.opportunityValue(OPP_HEALTH_FIELD);
        return HEALTH_LABELS[value] || null;
    }

    get winProbability() {
        const value = this.opportunityValue(OPP_WIN_PROBABILITY_FIELD);
        return value === null || value === undefined
            ? null
            : `${Math.round(value)}%`;
    }

    // Which buyer roles engaged lately, as one line written by the backend (README
    // "Analytics and forecast": stakeholder coverage).
    get coverage() {
        return this.opportunityValue(OPP_COVERAGE_FIELD) || null;
    }

    opportunityValue(field) {
        const data = this.opportunity && this.opportunity.data;
        const entry =
            data && data.fields ? data.fields[field.fieldApiName] : undefined;
        return entry ? entry.value : null;
    }

    get hasForecast() {
        return Boolean(this.health || this.winProbability);
    }

    @wire(getRelatedListRecords, {
        parentRecordId: '$recordId',
        relatedListId: PLANS_RELATED_LIST,
        fields: PLAN_FIELDS
    })
    wiredPlans(result) {
        this.plansResult = result;
        const records = result.data ? result.data.records : [];
        // MutualPlan keeps one plan per opportunity; show the first if an admin made more.
        this.planRecord = records.length > 0 ? records[0] : undefined;
        this.planId = this.planRecord ? this.planRecord.id : undefined;
    }

    @wire(getRelatedListRecords, {
        parentRecordId: '$planId',
        relatedListId: MILESTONES_RELATED_LIST,
        fields: MILESTONE_FIELDS,
        sortBy: [qualified(MILESTONE_POSITION_FIELD)],
        pageSize: 200
    })
    milestonesResult;

    // ---- state -------------------------------------------------------------

    get isLoading() {
        return (
            !this.plansResult ||
            (!this.plansResult.data && !this.plansResult.error)
        );
    }

    get planErrors() {
        return this.plansResult && this.plansResult.error
            ? toErrorList(this.plansResult.error)
            : undefined;
    }

    get showEmptyState() {
        return !!(
            this.plansResult &&
            this.plansResult.data &&
            !this.planRecord
        );
    }

    get hasPlan() {
        return !!this.planRecord;
    }

    get milestonesLoading() {
        const result = this.milestonesResult;
        return !result || (!result.data && !result.error);
    }

    get milestoneErrors() {
        return this.milestonesResult && this.milestonesResult.error
            ? toErrorList(this.milestonesResult.error)
            : undefined;
    }

    get milestones() {
        const data = this.milestonesResult && this.milestonesResult.data;
        return data ? data.records.map(toMilestone) : [];
    }

    get hasMilestones() {
        return this.milestones.length > 0;
    }

    get noMilestones() {
        return (
            !this.milestonesLoading &&
            !this.milestoneErrors &&
            this.milestones.length === 0
        );
    }

    // ---- plan header -------------------------------------------------------

    get planName() {
        return valueOf(this.planRecord, PLAN_NAME_FIELD);
    }

    get valueSummary() {
        return valueOf(this.planRecord, PLAN_VALUE_SUMMARY_FIELD);
    }

    get goLiveDate() {
        return valueOf(this.planRecord, PLAN_GO_LIVE_FIELD);
    }

    get contentCount() {
        const value = valueOf(this.planRecord, PLAN_CONTENT_COUNT_FIELD);
        return value === null || value === undefined ? null : Math.round(value);
    }

    get hasContentCount() {
        return this.contentCount !== null;
    }

    get contentLabel() {
        const count = this.contentCount;
        if (!count) {
            return 'No content yet';
        }
        return `${count} content block${count === 1 ? '' : 's'}`;
    }

    get buyerLink() {
        return this.planRecord
            ? valueOf(this.planRecord, PLAN_BUYER_LINK_FIELD)
            : null;
    }

    get copyDisabled() {
        return !this.buyerLink;
    }

    get summary() {
        return summarize(this.milestones, todayIso());
    }

    get progressStyle() {
        return `width: ${this.summary.progress}%`;
    }

    get progressLabel() {
        const { done, total, progress } = this.summary;
        return `${progress}% complete · ${done} of ${total} milestones done`;
    }

    get riskLabel() {
        return labelOf(RISK_OPTIONS, this.summary.risk);
    }

    get riskBadgeClass() {
        const themes = {
            on_track: 'slds-theme_success',
            at_risk: 'slds-theme_warning',
            off_track: 'slds-theme_error'
        };
        return themes[this.summary.risk];
    }

    get nextMilestoneLabel() {
        const next = this.summary.next;
        if (!next) {
            return 'All milestones done';
        }
        return next.dueDate
            ? `${next.title} (due ${next.dueDate})`
            : next.title;
    }

    get overdueLabel() {
        const count = this.summary.overdue;
        return count === 1 ? '1 overdue' : `${count} overdue`;
    }

    get hasOverdue() {
        return this.summary.overdue > 0;
    }

    get stages() {
        const today = todayIso();
        return groupByStage(this.milestones).map((stage) => ({
            ...stage,
            milestones: stage.milestones.map((milestone) => ({
                ...milestone,
                overdue: isOverdue(milestone, today),
                saving: this.savingIds.includes(milestone.id)
            }))
        }));
    }

    // ---- template picker ---------------------------------------------------

    get templateOptions() {
        return TEMPLATES.map((template) => ({
            label: `${template.label}: ${template.description}`,
            value: template.id
        }));
    }

    handleTemplateChange(event) {
        this.selectedTemplateId = event.detail.value;
    }

    // ---- actions -----------------------------------------------------------

    async handleCreatePlan() {
        const template = findTemplate(this.selectedTemplateId);
        this.isCreating = true;
        let planId;
        try {
            const plan = await createRecord({
                apiName: PLAN_OBJECT.objectApiName,
                fields: {
                    [PLAN_OPPORTUNITY_FIELD.fieldApiName]: this.recordId,
                    [PLAN_UUID_FIELD.fieldApiName]: newUuid()
                }
            });
            planId = plan.id;
            const steps = milestonesFromTemplate(template, todayIso());
            // One at a time: each insert locks the master plan row.
            for (const step of steps) {
                // eslint-disable-next-line no-await-in-loop
                await createRecord(milestoneRecordInput(planId, step));
            }
            this.toast(
                'success',
                'Mutual action plan created',
                `${template.label} template with ${steps.length} milestones.`
            );
        } catch (error) {
            if (planId) {
                // Do not leave a half-built plan behind; milestones go with it.
                await deleteRecord(planId).catch(() => undefined);
            }
            this.toast(
                'error',
                'Could not create the mutual action plan',
                reduceErrors(error).join(' ')
            );
        } finally {
            this.isCreating = false;
        }
        await refreshApex(this.plansResult);
    }

    async handleMilestoneChange(event) {
        const { id, field, value } = event.detail;
        const fields = {
            Id: id,
            [EDITABLE_FIELDS[field].fieldApiName]: value
        };
        if (field === 'status') {
            fields[MILESTONE_COMPLETED_AT_FIELD.fieldApiName] =
                value === 'done' ? new Date().toISOString() : null;
        }
        this.savingIds = [...this.savingIds, id];
        try {
            await updateRecord({ fields });
        } catch (error) {
            this.toast(
                'error',
                'Could not update the milestone',
                reduceErrors(error).join(' ')
            );
        } finally {
            this.savingIds = this.savingIds.filter(
                (savingId) => savingId !== id
            );
        }
        // Refresh on success (order, progress) and on error (show the saved value).
        await refreshApex(this.milestonesResult);
    }

    async handleCopyBuyerLink() {
        const link = this.buyerLink;
        try {
            await navigator.clipboard.writeText(link);
            this.toast(
                'success',
                'Buyer link copied',
                'Paste it into your message to the buyer.'
            );
        } catch {
            this.toast(
                'error',
                'Could not copy the buyer link',
                `Copy it by hand: ${link}`
            );
        }
    }

    handleRefresh() {
        return Promise.all([
            refreshApex(this.plansResult),
            refreshApex(this.milestonesResult)
        ]);
    }

    toast(variant, title, message) {
        this.dispatchEvent(new ShowToastEvent({ title, message, variant }));
    }
}

function toMilestone(record) {
    return {
        id: record.id,
        title:
            valueOf(record, MILESTONE_TITLE_FIELD) ||
            valueOf(record, MILESTONE_NAME_FIELD),
        stage: valueOf(record, MILESTONE_STAGE_FIELD),
        ownerSide: valueOf(record, MILESTONE_OWNER_SIDE_FIELD),
        ownerName: valueOf(record, MILESTONE_OWNER_NAME_FIELD),
        dueDate: valueOf(record, MILESTONE_DUE_DATE_FIELD),
        status: valueOf(record, MILESTONE_STATUS_FIELD) || 'not_started',
        risk: valueOf(record, MILESTONE_RISK_FIELD) || 'on_track',
        internalOnly: valueOf(record, MILESTONE_INTERNAL_FIELD) === true,
        position: valueOf(record, MILESTONE_POSITION_FIELD)
    };
}

function milestoneRecordInput(planId, step) {
    return {
        apiName: MILESTONE_OBJECT.objectApiName,
        fields: {
            [MILESTONE_PLAN_FIELD.fieldApiName]: planId,
            [MILESTONE_UUID_FIELD.fieldApiName]: step.uuid,
            [MILESTONE_NAME_FIELD.fieldApiName]: step.title.slice(
                0,
                NAME_MAX_LENGTH
            ),
            [MILESTONE_TITLE_FIELD.fieldApiName]: step.title,
            [MILESTONE_STAGE_FIELD.fieldApiName]: step.stage,
            [MILESTONE_OWNER_SIDE_FIELD.fieldApiName]: step.ownerSide,
            [MILESTONE_DUE_DATE_FIELD.fieldApiName]: step.dueDate,
            [MILESTONE_STATUS_FIELD.fieldApiName]: 'not_started',
            [MILESTONE_RISK_FIELD.fieldApiName]: 'on_track',
            [MILESTONE_INTERNAL_FIELD.fieldApiName]: false,
            [MILESTONE_POSITION_FIELD.fieldApiName]: step.position
        }
    };
}

function toErrorList(error) {
    return reduceErrors(error).map((message, index) => ({
        key: String(index),
        message
    }));
}
