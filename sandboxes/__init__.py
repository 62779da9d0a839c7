"""Local emulators of the CRM APIs MutualPlan uses (demo, tests, benchmarks); not part of the
installed app. `kit` holds what both use; `hubspot` and `salesforce` are the two sandboxes."""
