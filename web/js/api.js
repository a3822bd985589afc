// The connector's API, called cross-origin with the signed-in user's bearer
// token, as CustomerHub's UI calls it.
import { token } from "./session.js";

let config = null;

export async function loadConfig() {
  const response = await fetch("/config.json", { cache: "no-store" });
  config = await response.json();
  return config;
}

export function getConfig() {
  return config;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(config.apiBaseUrl + path, init);
  } catch {
    throw new ApiError(0, "unreachable",
      `The connector's API did not answer at ${config.apiBaseUrl}. Is the local stack (make run) still running?`);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    const message = response.status === 401
      ? "Your sign-in is not accepted any more. Sign in again from the start page."
      : error.message || `The API answered ${response.status}.`;
    throw new ApiError(response.status, error.code || "unknown", message);
  }
  return data;
}

// For a search that can be asked again before its answer comes: each call
// of the returned function takes a request, and only the latest request's
// answer (or failure) arrives; an earlier one never settles, so a slow old
// answer cannot replace a newer one on the page.
export function latestOnly() {
  let latest = 0;
  return (request) => {
    const mine = ++latest;
    return new Promise((resolve, reject) => {
      request.then((value) => mine === latest && resolve(value), (error) => mine === latest && reject(error));
    });
  };
}
