// GOV.UK Frontend and MOJ Frontend components on every page (no inline script: the CSP forbids it).
import { initAll } from "/assets/govuk-frontend.min.js";
initAll();
