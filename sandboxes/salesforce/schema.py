"""The org's schema: sObject types and fields, the package's custom objects read from its DX source."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NUMERIC = ("double", "percent", "currency", "int")
# An org's default TaskStatus values; "Completed" is the one marked closed.
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")

# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------
@dataclass
class _Field:
    name: str
    type: str                       # id reference string textarea picklist email url phone
    label: str = ""                 # boolean date datetime double percent currency int
    length: int = 0
    reference_to: tuple = ()
    relationship_name: str | None = None
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    required: bool = False
    createable: bool = True
    updateable: bool = True
    picklist: tuple = ()
    restricted: bool = False
    default: Any = None
    delete_constraint: str | None = None    # "Cascade" (master-detail) | "SetNull"
    custom: bool = False
    master_detail: bool = False
    child_relationship_name: str | None = None   # parent-side name, e.g. "Milestones__r"

    def ro(self) -> _Field:
        self.createable = self.updateable = False
        return self


def _F(name, type_, **kw) -> _Field:
    kw.setdefault("label", name.replace("__c", "").replace("_", " "))
    if type_ in ("string", "picklist", "email", "url", "phone") and not kw.get("length"):
        kw["length"] = 255
    if type_ == "textarea" and not kw.get("length"):
        kw["length"] = 32768
    return _Field(name, type_, **kw)


@dataclass
class _SType:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: dict                    # lower name -> _Field
    custom: bool = False
    stored: bool = True             # False: generated rows (User, OpportunityStage...)
    writable: bool = True
    has_owner: bool = True
    autonumber: str | None = None     # Name display format, e.g. "MAP-{00000}"
    autonumber_next: int = 1

    def field(self, name: str) -> _Field | None:
        return self.fields.get(name.lower())

    @property
    def name_field(self) -> _Field | None:
        return self.fields.get("name")


def _system_fields(owner: bool = True) -> list:
    fs = [
        _F("Id", "id", label="Record ID").ro(),
        _F("IsDeleted", "boolean", label="Deleted").ro(),
        _F("CreatedDate", "datetime", label="Created Date").ro(),
        _F("CreatedById", "reference", reference_to=("User",), relationship_name="CreatedBy").ro(),
        _F("LastModifiedDate", "datetime", label="Last Modified Date").ro(),
        _F("LastModifiedById", "reference", reference_to=("User",),
           relationship_name="LastModifiedBy").ro(),
        _F("SystemModstamp", "datetime", label="System Modstamp").ro(),
    ]
    if owner:
        fs.append(_F("OwnerId", "reference", reference_to=("User",), relationship_name="Owner",
                     label="Owner ID"))
    return fs


def _mk(name, label, plural, prefix, fields, **kw) -> _SType:
    return _SType(name, label, plural, prefix, {f.name.lower(): f for f in fields}, **kw)


# The package's DX source in this repository; read by default (``package_source="auto"``) so
# the emulator's custom objects are exactly the package's.
REPO_PACKAGE_SOURCE = Path(__file__).resolve().parents[2] / "salesforce_package" / "force-app" \
    / "main" / "default"

# Fallback package schema (un-namespaced), used with ``package_source=None`` (the emulator's
# own tests) or when the DX source is missing.
_STATUS = ("Not_Started", "In_Progress", "Done", "Blocked", "Skipped")
_RISK = ("On_Track", "At_Risk", "Off_Track")
DEFAULT_PACKAGE_OBJECTS: dict = {
    "Mutual_Action_Plan__c": {
        "label": "Mutual Action Plan", "plural": "Mutual Action Plans", "name_length": 80,
        "fields": [
            _F("Opportunity__c", "reference", reference_to=("Opportunity",),
               relationship_name="Opportunity__r", delete_constraint="SetNull", custom=True),
            _F("External_Id__c", "string", length=64, external_id=True, unique=True, custom=True),
            _F("Status__c", "picklist", picklist=("Active", "Closed", "Archived"), custom=True),
            _F("Progress__c", "percent", custom=True),
            _F("Overall_Risk__c", "picklist", picklist=_RISK, custom=True),
            _F("Next_Milestone__c", "string", custom=True),
            _F("Next_Milestone_Due__c", "date", custom=True),
            _F("Overdue_Count__c", "double", custom=True),
            _F("Days_Slipped__c", "double", custom=True),
            _F("Buyer_Link__c", "url", custom=True),
            _F("Last_Buyer_Activity__c", "datetime", custom=True),
            _F("Value_Summary__c", "textarea", custom=True),
        ]},
    "MAP_Milestone__c": {
        "label": "MAP Milestone", "plural": "MAP Milestones", "name_length": 80, "detail": True,
        "fields": [
            _F("Mutual_Action_Plan__c", "reference", reference_to=("Mutual_Action_Plan__c",),
               relationship_name="Mutual_Action_Plan__r", delete_constraint="Cascade",
               required=True, master_detail=True, custom=True, updateable=False),
            _F("External_Id__c", "string", length=64, external_id=True, unique=True, custom=True),
            _F("Status__c", "picklist", picklist=_STATUS, custom=True),
            _F("Stage__c", "string", custom=True),
            _F("Sequence__c", "double", custom=True),
            _F("Due_Date__c", "date", custom=True),
            _F("Completed_Date__c", "date", custom=True),
            _F("Owner_Side__c", "picklist", picklist=("Buyer", "Seller", "Both"), custom=True),
            _F("Owner_Names__c", "string", custom=True),
            _F("Risk__c", "picklist", picklist=_RISK, custom=True),
            _F("Description__c", "textarea", custom=True),
            _F("Internal_Only__c", "boolean", default=False, custom=True),
        ]},
    # extra fields the package adds to standard objects
    "Opportunity": {"extends": True, "fields": [
        _F("MAP_Progress__c", "percent", custom=True),
        _F("MAP_Next_Milestone__c", "string", custom=True),
        _F("MAP_Next_Milestone_Due__c", "date", custom=True),
        _F("MAP_Overall_Risk__c", "string", custom=True),
        _F("MAP_Overdue_Count__c", "double", custom=True),
        _F("MAP_Days_Slipped__c", "double", custom=True),
        _F("MAP_Buyer_Link__c", "url", custom=True),
        _F("MAP_Last_Buyer_Activity__c", "datetime", custom=True),
        _F("MAP_Phase__c", "string", custom=True),
    ]},
}

_XML_TYPES = {
    "Text": "string", "TextArea": "textarea", "LongTextArea": "textarea", "Html": "textarea",
    "Picklist": "picklist", "MultiselectPicklist": "multipicklist", "Checkbox": "boolean",
    "Date": "date", "DateTime": "datetime", "Number": "double", "Percent": "percent",
    "Currency": "currency", "Url": "url", "Email": "email", "Phone": "phone",
    "Lookup": "reference", "MasterDetail": "reference",
}


def load_package_schema(source_dir: str) -> dict:
    """Read custom objects/fields from a DX source dir (``.../force-app/main/default``).

    Returns a dict shaped like ``DEFAULT_PACKAGE_OBJECTS``.  Custom fields on standard objects
    (e.g. ``objects/Opportunity/fields/MAP_Progress__c.field-meta.xml``) become ``extends``.
    """
    ns = {"m": "http://soap.sforce.com/2006/04/metadata"}
    out: dict = {}
    objects = Path(source_dir) / "objects"
    for obj_dir in sorted(p for p in objects.iterdir() if p.is_dir()) if objects.is_dir() else []:
        name = obj_dir.name
        entry: dict = {"fields": []}
        meta = obj_dir / f"{name}.object-meta.xml"
        if name.endswith("__c"):
            entry.update(label=name[:-3].replace("_", " "), plural=name[:-3].replace("_", " "),
                         name_length=80)
            if meta.exists():
                root = ET.parse(meta).getroot()
                entry["label"] = root.findtext("m:label", entry["label"], ns)
                entry["plural"] = root.findtext("m:pluralLabel", entry["plural"], ns)
                if root.findtext("m:nameField/m:type", "", ns) == "AutoNumber":
                    entry["autonumber"] = root.findtext("m:nameField/m:displayFormat", "", ns)
                entry["detail"] = root.findtext("m:sharingModel", "", ns) == "ControlledByParent"
        else:
            entry["extends"] = True
        for fpath in sorted((obj_dir / "fields").glob("*.field-meta.xml")):
            r = ET.parse(fpath).getroot()

            def t(tag: str, d: str = "", r=r) -> str:
                return (r.findtext(f"m:{tag}", d, ns) or d).strip()
            fname = t("fullName") or fpath.name.split(".")[0]
            xtype = t("type", "Text")
            kind = _XML_TYPES.get(xtype, "string")
            kw: dict = {"label": t("label", fname), "custom": True}
            if t("length"):
                kw["length"] = int(t("length"))
            if kind == "reference":
                kw["reference_to"] = (t("referenceTo"),)
                kw["relationship_name"] = fname[:-3] + "__r"
                if t("relationshipName"):
                    kw["child_relationship_name"] = t("relationshipName") + "__r"
                if xtype == "MasterDetail":
                    # Not updateable unless the relationship allows reparenting (see
                    # SalesforceSandbox.legacy_updateable_master_detail for the sources).
                    kw.update(master_detail=True, required=True, delete_constraint="Cascade",
                              updateable=t("reparentableMasterDetail") == "true")
                else:
                    kw["delete_constraint"] = t("deleteConstraint", "SetNull")
            if t("externalId") == "true":
                kw["external_id"] = True
            if t("unique") == "true":
                kw["unique"] = True
            if t("caseSensitive") == "true":
                kw["case_sensitive"] = True
            if t("required") == "true":
                kw["required"] = True
            if kind == "boolean":
                kw["default"] = t("defaultValue", "false") == "true"
            if kind in ("picklist", "multipicklist"):
                vals = [v.findtext("m:fullName", "", ns)
                        for v in r.findall("m:valueSet/m:valueSetDefinition/m:value", ns)]
                kw["picklist"] = tuple(vals)
                kw["restricted"] = r.findtext("m:valueSet/m:restricted", "", ns) == "true"
            if xtype in ("Formula",) or t("formula"):
                kw["createable"] = kw["updateable"] = False
            entry["fields"].append(_F(fname, kind, **kw))
        out[name] = entry
    return out


def record_type_field() -> _Field:
    """Opportunity.RecordTypeId: present only in orgs that define Opportunity record types."""
    return _F("RecordTypeId", "reference", reference_to=("RecordType",),
              relationship_name="RecordType", label="Record Type ID")


def _standard_types() -> dict:
    types = [
        _mk("Account", "Account", "Accounts", "001", _system_fields() + [
            _F("Name", "string", required=True, label="Account Name"),
            _F("Type", "picklist"), _F("Industry", "picklist"), _F("Website", "url"),
            _F("Description", "textarea"),
        ]),
        _mk("Contact", "Contact", "Contacts", "003", _system_fields() + [
            _F("FirstName", "string", length=40), _F("LastName", "string", length=80,
                                                        required=True),
            _F("Name", "string", length=121).ro(), _F("Email", "email"), _F("Title", "string"),
            _F("Phone", "phone"),
            _F("AccountId", "reference", reference_to=("Account",), relationship_name="Account",
               delete_constraint="SetNull"),
        ]),
        _mk("Opportunity", "Opportunity", "Opportunities", "006", _system_fields() + [
            _F("Name", "string", length=120, required=True, label="Name"),
            _F("AccountId", "reference", reference_to=("Account",), relationship_name="Account",
               delete_constraint="SetNull", label="Account ID"),
            _F("StageName", "picklist", required=True, label="Stage"),
            _F("CloseDate", "date", required=True, label="Close Date"),
            _F("Amount", "currency"), _F("Probability", "percent", label="Probability (%)"),
            _F("IsClosed", "boolean", label="Closed").ro(),
            _F("IsWon", "boolean", label="Won").ro(),
            _F("ForecastCategoryName", "picklist", label="Forecast Category",
               picklist=("Omitted", "Pipeline", "BestCase", "Commit", "Closed")),
            record_type_field(),
            _F("Type", "picklist"), _F("NextStep", "string", label="Next Step"),
            _F("Description", "textarea"), _F("LeadSource", "picklist", label="Lead Source"),
        ]),
        # Task, as its describe has it: Status and Priority are required picklists defaulted
        # on create ("Not Started", "Normal"); WhatId is polymorphic (any object that allows
        # activities: Opportunity, Account, custom objects); IsClosed follows Status. Object
        # reference: https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/
        # object_reference/sforce_api_objects_task.htm ; the default TaskStatus values:
        # https://help.salesforce.com/s/articleView?id=sf.customize_taskstatus.htm
        _mk("Task", "Task", "Tasks", "00T", _system_fields() + [
            _F("Subject", "string", length=255, label="Subject"),
            _F("Description", "textarea", length=32000, label="Comments"),
            _F("Status", "picklist", required=True, restricted=True, default="Not Started",
               picklist=TASK_STATUSES, label="Status"),
            _F("Priority", "picklist", required=True, restricted=True, default="Normal",
               picklist=("High", "Normal", "Low"), label="Priority"),
            _F("ActivityDate", "date", label="Due Date Only"),
            _F("WhatId", "reference", reference_to=("Opportunity", "Account"),
               relationship_name="What", delete_constraint="SetNull", label="Related To ID"),
            _F("WhoId", "reference", reference_to=("Contact",), relationship_name="Who",
               delete_constraint="SetNull", label="Name ID"),
            _F("TaskSubtype", "picklist", picklist=("Task", "Email", "Call"), label="Task Subtype"),
            _F("IsClosed", "boolean", label="Closed").ro(),
        ]),
        _mk("User", "User", "Users", "005", [
            _F("Id", "id").ro(), _F("Username", "string").ro(), _F("Name", "string").ro(),
            _F("Email", "email").ro(), _F("IsActive", "boolean").ro(),
            _F("TimeZoneSidKey", "picklist").ro(), _F("LanguageLocaleKey", "picklist").ro(),
            _F("SystemModstamp", "datetime").ro(),
        ], stored=False, writable=False, has_owner=False),
        _mk("RecordType", "Record Type", "Record Types", "012", [
            _F("Id", "id").ro(), _F("Name", "string").ro(), _F("DeveloperName", "string").ro(),
            _F("SobjectType", "picklist").ro(), _F("IsActive", "boolean").ro(),
            _F("BusinessProcessId", "reference", reference_to=("BusinessProcess",),
               relationship_name="BusinessProcess").ro(),
        ], stored=False, writable=False, has_owner=False),
        _mk("BusinessProcess", "Business Process", "Business Processes", "019", [
            _F("Id", "id").ro(), _F("Name", "string").ro(), _F("TableEnumOrId", "string").ro(),
            _F("IsActive", "boolean").ro(),
        ], stored=False, writable=False, has_owner=False),
        _mk("OpportunityStage", "Opportunity Stage", "Opportunity Stages", "01J", [
            _F("Id", "id").ro(), _F("MasterLabel", "string").ro(), _F("ApiName", "string").ro(),
            _F("IsActive", "boolean").ro(), _F("IsClosed", "boolean").ro(),
            _F("IsWon", "boolean").ro(), _F("DefaultProbability", "percent").ro(),
            _F("ForecastCategoryName", "picklist").ro(), _F("SortOrder", "int").ro(),
            _F("SystemModstamp", "datetime").ro(),
        ], stored=False, writable=False, has_owner=False),
        _mk("Organization", "Organization", "Organizations", "00D", [
            _F("Id", "id").ro(), _F("Name", "string").ro(), _F("IsSandbox", "boolean").ro(),
            _F("OrganizationType", "picklist").ro(), _F("NamespacePrefix", "string").ro(),
            _F("InstanceName", "string").ro(),
        ], stored=False, writable=False, has_owner=False),
    ]
    return {t.name.lower(): t for t in types}





def _soql_type_name(f: _Field) -> str:
    return {"datetime": "dateTime", "date": "date", "boolean": "boolean", "id": "id",
            "reference": "id"}.get(f.type, "double" if f.type in _NUMERIC else "string")


