// The case list (/referrals): MOJ Frontend's sortable table (no inline script: the CSP forbids it).
import { initAll } from "/assets/moj/moj-frontend.min.js";

initAll();
