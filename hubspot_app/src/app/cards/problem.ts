import type { Problem } from './types';

/** A failed backend call, carrying the application/problem+json body. */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(problem.detail || problem.title);
    this.name = 'ApiError';
    this.status = problem.status;
    this.problem = problem;
  }
}

/** Turns whatever a call threw into an ApiError (status 0 = no response). */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new ApiError({
    type: 'about:blank',
    title: 'Could not reach MutualPlan',
    status: 0,
    detail,
  });
}

/** Text to show for a problem: its detail, then any field errors. */
export function problemText(problem: Problem): string {
  const parts = [problem.detail || problem.title];
  parts.push(...fieldErrors(problem.errors));
  return parts.join(' ');
}

function fieldErrors(errors: unknown): string[] {
  if (!errors) return [];
  if (Array.isArray(errors)) {
    return errors.map((e) =>
      typeof e === 'string' ? e : (e as { detail?: string; message?: string })?.detail ??
        (e as { message?: string })?.message ?? JSON.stringify(e),
    );
  }
  if (typeof errors === 'object') {
    return Object.entries(errors as Record<string, unknown>).map(
      ([field, msg]) => `${field}: ${Array.isArray(msg) ? msg.join(', ') : String(msg)}`,
    );
  }
  return [String(errors)];
}
