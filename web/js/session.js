// Who is signed in: the token CustomerHub's sign-in gave this tab. A tab of
// its own per user, so an admin and a member can be tried side by side.
const KEY = "customerhub.token";

export function token() {
  return sessionStorage.getItem(KEY);
}

export function signIn(newToken) {
  sessionStorage.setItem(KEY, newToken);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

// The token's claims, for what the page shows; the API checks the token.
// Null when no one is signed in or the token has expired.
export function currentUser() {
  const value = token();
  if (!value) return null;
  try {
    const payload = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload));
    if (typeof claims.exp !== "number" || claims.exp * 1000 <= Date.now()) return null;
    return {
      id: claims.sub, site: claims.site, role: claims.role, email: claims.email || "",
      isAdmin: claims.role === "admin" || claims.role === "owner", expires: new Date(claims.exp * 1000),
    };
  } catch {
    return null;
  }
}
