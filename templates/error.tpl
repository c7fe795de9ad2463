% rebase('layout', page=page)
<h1>{{heading}}</h1>
<p class="message">{{message}}</p>
<p><a href="{{page.link()}}">Back to the overview</a></p>
