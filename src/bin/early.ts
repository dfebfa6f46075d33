/**
 * The first module the `tether` binary evaluates (its first import): process settings that must be
 * made before anything else runs. V8 flags are changed here, while the heap is a few megabytes and
 * no garbage collection is under way; changing them later, in the middle of a marking cycle, is
 * what Node documents as unspecified (a gateway that did it after loading its modules stopped with
 * a V8 fatal error once, at start, on a loaded machine).
 */
import { steadyDataPathGc } from './gc-tuning.js';

// Every command: the gateway and the connector move tunnel data; the others are short and do not
// notice (src/bin/gc-tuning.ts).
steadyDataPathGc();
