import { type TSchema, Type as t } from '@sinclair/typebox';
import type { DocumentDecoration } from 'elysia';
import { type ErrorCode, errorStatus } from '../errors';

/** Where the one error envelope lives in the OpenAPI document. */
export const ERROR_SCHEMA_REF = '#/components/schemas/Error';

/** A reference to a schema of `components.schemas`. */
export const schemaRef = (name: string) => ({ $ref: `#/components/schemas/${name}` });

export interface Answer {
  description: string;
  /** The body's schema; a TypeBox schema is a JSON Schema already. */
  schema?: TSchema | { $ref: string };
  /** @default 'application/json' */
  contentType?: string;
  headers?: Record<string, { description: string; schema: TSchema }>;
}

export interface RouteDoc {
  summary: string;
  description?: string;
  tags: string[];
  /**
   * The request body, for a route whose handler checks it itself (so no Elysia `body` schema tells the
   * document): its schema and the content types it is read from.
   */
  body?: { schema: TSchema; contentTypes: readonly string[] };
  /** The successful answers, by status. */
  answers: Record<number, Answer>;
  /** The error codes this route can answer with; each becomes its status's response, in the one envelope. */
  errors?: readonly ErrorCode[];
}

const RETRY_AFTER = { description: 'seconds to wait before trying again', schema: t.Integer() };

/**
 * A route's OpenAPI `detail`: summary, tags and every response it can give. The responses are
 * documentation only: Elysia does not check what a handler returns against them, so the relay's hot
 * path pays nothing for them.
 */
export function describe(doc: RouteDoc): DocumentDecoration {
  const responses: Record<string, unknown> = {};
  for (const [status, answer] of Object.entries(doc.answers)) {
    responses[status] = {
      description: answer.description,
      ...(answer.headers ? { headers: answer.headers } : {}),
      ...(answer.schema ? { content: { [answer.contentType ?? 'application/json']: { schema: answer.schema } } } : {}),
    };
  }
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of doc.errors ?? []) byStatus.set(errorStatus[code], [...(byStatus.get(errorStatus[code]) ?? []), code]);
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    responses[String(status)] = {
      description: `error: ${codes.join(', ')}`,
      ...(status === 429 || status === 503 ? { headers: { 'Retry-After': RETRY_AFTER } } : {}),
      content: { 'application/json': { schema: { $ref: ERROR_SCHEMA_REF } } },
    };
  }
  return {
    summary: doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    tags: doc.tags,
    ...(doc.body ? { requestBody: { required: true, content: Object.fromEntries(doc.body.contentTypes.map((type) => [type, { schema: doc.body?.schema }])) } } : {}),
    responses,
  } as DocumentDecoration;
}

/** The tags that group the API's routes in its documentation. */
export const TAGS = {
  signalling: 'signalling',
  events: 'events',
  ice: 'ice',
  operations: 'operations',
  admin: 'admin',
  client: 'client',
  whip: 'whip',
} as const;
