/**
 * SenderKit's OpenAPI document (shared/senderkit/openapi.yaml) as response validators for tests
 * that run inside workerd (the edge project), beside test/helpers/openapi.ts, which reads the file
 * with node:fs for Node-run tests. Same validator: ajv's JSON Schema 2020-12 (OpenAPI 3.1's dialect)
 * with ajv-formats; the YAML comes in as Vite's raw import, and the vitest workers pool lets ajv
 * compile its validators with `new Function`.
 *
 *   expectMatches(res.status, body, "getTemplate")   // the operation's documented JSON answer for that status
 *   expectSchema(body, "RenderResult")               // one component schema
 */
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { expect } from "vitest";
import { parse } from "yaml";
import source from "../../shared/senderkit/openapi.yaml?raw";

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

interface ResponseObject {
  $ref?: string;
  content?: Record<string, { schema?: Record<string, unknown> }>;
}
interface Operation {
  operationId?: string;
  responses?: Record<string, ResponseObject>;
}

const DOC_ID = "senderkit-openapi";
export const openapi = parse(source) as {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; responses: Record<string, ResponseObject> };
};

// OpenAPI's own keywords inside schemas (example, discriminator…) are annotations: not strict.
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: DOC_ID, components: openapi.components }, DOC_ID);

const cache = new Map<string, ValidateFunction>();

function validatorFor(schema: Record<string, unknown>, key: string): ValidateFunction {
  let v = cache.get(key);
  if (!v) {
    // Local refs (#/components/…) point into the registered document.
    const text = JSON.stringify(schema).replaceAll('"$ref":"#/', `"$ref":"${DOC_ID}#/`);
    v = ajv.compile(JSON.parse(text) as Record<string, unknown>);
    cache.set(key, v);
  }
  return v;
}

function operation(operationId: string): Operation {
  for (const item of Object.values(openapi.paths)) {
    for (const op of Object.values(item)) if (op.operationId === operationId) return op;
  }
  throw new Error(`no operation ${operationId} in the OpenAPI document`);
}

/** The JSON schema of an operation's documented response for `status` (an undocumented status throws). */
export function responseSchema(operationId: string, status: number): Record<string, unknown> {
  const op = operation(operationId);
  let r = op.responses?.[String(status)];
  if (!r) throw new Error(`${operationId} documents no ${status} response`);
  if (r.$ref) r = openapi.components.responses[r.$ref.split("/").pop()!]!;
  const schema = r.content?.["application/json"]?.schema;
  if (!schema) throw new Error(`${operationId} ${status} has no application/json schema`);
  return schema;
}

const errorsOf = (v: ValidateFunction) => ajv.errorsText(v.errors, { separator: "\n" });

/** Asserts `body` is valid for the operation's documented response `status`. */
export function expectMatches(status: number, body: unknown, operationId: string): void {
  const v = validatorFor(responseSchema(operationId, status), `${operationId}:${status}`);
  expect(
    v(body),
    `${operationId} ${status} does not match the OpenAPI:\n${errorsOf(v)}\n${JSON.stringify(body)}`,
  ).toBe(true);
}

/** Asserts `value` is valid for `#/components/schemas/<name>`. */
export function expectSchema(value: unknown, name: string): void {
  const v = validatorFor({ $ref: `#/components/schemas/${name}` }, `schema:${name}`);
  expect(v(value), `not a ${name}:\n${errorsOf(v)}\n${JSON.stringify(value)}`).toBe(true);
}

/** The validator's verdict without asserting (to test that it can fail). */
export function matches(status: number, body: unknown, operationId: string): boolean {
  return validatorFor(responseSchema(operationId, status), `${operationId}:${status}`)(body) as boolean;
}
