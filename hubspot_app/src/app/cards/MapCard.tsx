/** Entry point of the "Mutual Action Plan" card on deals (see MapCard-hsmeta.json). */
import { hubspot } from '@hubspot/ui-extensions';

import { PlanCard } from './components/PlanCard';

hubspot.extend<'crm.record.tab'>(() => <PlanCard />);
