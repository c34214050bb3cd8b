/**
 * Validates /v1 responses against SenderKit's OpenAPI 3.1 document (shared/senderkit/openapi.yaml)
 * with Ajv's JSON Schema 2020-12 validator (OpenAPI 3.1's schema dialect) and ajv-formats
 * (uuid, date-time, email, byte). Node only: Ajv compiles validators with `new Function`, which
 * workerd forbids.
 *
 *   const sk = senderKitContract();
 *   await sk.check("POST", "/v1/send", res)   // status, content type and body per the operation
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { parse } from "yaml";

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

export const OPENAPI_PATH = path.join(import.meta.dirname, "..", "..", "shared", "senderkit", "openapi.yaml");

type Json = Record<string, unknown>;

const pointer = (parts: string[]) => parts.map((p) => p.replace(/~/g, "~0").replace(/\//g, "~1")).join("/");

export function senderKitContract() {
  const doc = parse(readFileSync(OPENAPI_PATH, "utf8")) as Json;
  // OpenAPI keywords beside JSON Schema's (example, discriminator…) are annotations: not strict.
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema(doc, "openapi");
  const compiled = new Map<string, ReturnType<Ajv2020["compile"]>>();
  const paths = doc.paths as Record<string, Record<string, Json>>;

  function templateOf(p: string): string {
    if (paths[p]) return p;
    for (const t of Object.keys(paths)) {
      const re = new RegExp(`^${t.replace(/\{[^}]+\}/g, "[^/]+")}$`);
      if (re.test(p)) return t;
    }
    throw new Error(`no operation in the OpenAPI for ${p}`);
  }

  /** The JSON schema pointer of an operation's response, following a components/responses $ref. */
  function schemaRef(method: string, template: string, status: number): string | null {
    const op = paths[template]?.[method.toLowerCase()];
    if (!op) throw new Error(`the OpenAPI has no ${method} ${template}`);
    const responses = op.responses as Record<string, Json>;
    const r = responses[String(status)];
    if (!r) throw new Error(`${method} ${template} does not document status ${status}`);
    let base = ["paths", template, method.toLowerCase(), "responses", String(status)];
    let resp = r;
    if (typeof resp.$ref === "string") {
      const parts = (resp.$ref as string).replace(/^#\//, "").split("/");
      base = parts;
      resp = parts.reduce<Json>((o, k) => o[k] as Json, doc);
    }
    const content = resp.content as Record<string, Json> | undefined;
    if (!content?.["application/json"]) return null;
    return `openapi#/${pointer([...base, "content", "application/json", "schema"])}`;
  }

  return {
    doc,
    /** Asserts that `res` is a documented answer of the operation; returns its JSON body. */
    async check(method: string, p: string, res: Response): Promise<unknown> {
      const template = templateOf(p.split("?")[0]!);
      const ref = schemaRef(method, template, res.status);
      const text = await res.text();
      if (ref === null) return text;
      const type = res.headers.get("content-type") ?? "";
      if (!type.startsWith("application/json")) {
        throw new Error(`${method} ${p} → ${res.status} with content-type ${type}: ${text.slice(0, 200)}`);
      }
      const body = JSON.parse(text) as unknown;
      let validate = compiled.get(ref);
      if (!validate) {
        validate = ajv.compile({ $ref: ref });
        compiled.set(ref, validate);
      }
      if (!validate(body)) {
        throw new Error(
          `${method} ${p} → ${res.status} does not match the OpenAPI: ${ajv.errorsText(validate.errors)}\n${text.slice(0, 1000)}`,
        );
      }
      return body;
    },
    /** Validates a value against a named component schema (e.g. an SSE event's Message). */
    component(name: string, value: unknown): void {
      const ref = `openapi#/components/schemas/${name}`;
      let validate = compiled.get(ref);
      if (!validate) {
        validate = ajv.compile({ $ref: ref });
        compiled.set(ref, validate);
      }
      if (!validate(value)) throw new Error(`not a ${name}: ${ajv.errorsText(validate.errors)}`);
    },
  };
}
