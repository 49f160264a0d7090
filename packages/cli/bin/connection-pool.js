#!/usr/bin/env node
// Runs the TypeScript sources through tsx (a devDependency of the workspace), so no build step is needed.
import { register } from "tsx/esm/api"

register()
await import("../src/bin.ts")
