// Adds the toBeAccessible() matcher from @sa11y/jest (axe-core rules), as lwc-recipes does.
const { registerSa11yMatcher } = require('@sa11y/jest');

registerSa11yMatcher();
