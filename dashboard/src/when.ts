/** A time shown relative to now, with the absolute time on hover. */
import { html } from "htm/preact";
import { absolute, relative } from "./format.ts";

export function When(props: { at: string | number | null | undefined; now?: number }) {
  return html`<time datetime=${absolute(props.at)} title=${absolute(props.at)}>${relative(props.at, props.now)}</time>`;
}
