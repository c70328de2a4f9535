#!/usr/bin/env node
/** Interim entry for the backup demo until `sanbox demo` calls runBackupDemo(). */
import { runBackupDemo } from "./backup-demo.js";

await runBackupDemo();
