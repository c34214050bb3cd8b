import type { z } from "zod";
import { AppError } from "../../../shared/errors.ts";

/** Parses input with zod; failures become one AppError listing every field (rendered per dialect). */
export function parseInput<T extends z.ZodType>(
  schema: T,
  data: unknown,
  where: "body" | "query",
): z.infer<T> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  throw new AppError("invalid_request", "Invalid request", {
    fields: result.error.issues.map((i) => ({
      message: i.message,
      field: [where, ...i.path.map(String)].join("."),
    })),
  });
}

/** Reads a JSON body. Clients often send `Content-Type: application/json` with an empty body; that is `{}`. */
export async function readJson(req: Request): Promise<unknown> {
  const text = await req.text();
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new AppError("invalid_request", "Request body is not valid JSON");
  }
}
