// The reset and verification pages: the token comes in the link's fragment
// (README, "Account recovery"), which browsers send to no server, so it
// stays out of access logs and Referer. This reads it into the form and
// takes it out of the address bar and the history.
const match = /(?:^#|&)token=([A-Za-z0-9_-]+)/.exec(window.location.hash);
if (match) {
  const field = document.getElementById('token');
  if (field) field.value = match[1];
  history.replaceState(null, '', window.location.pathname);
}
