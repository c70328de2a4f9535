/** Registers every area, in the order the report lists them. */
import "./identity.js";
import "./lun.js";
import "./snapshot.js";
import "./group-consistency.js";
import "./cbt.js";
import "./allocated.js";
import "./revert-clone.js";
import "./nbd.js";
import "./auth.js";
